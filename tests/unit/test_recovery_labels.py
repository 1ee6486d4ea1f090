"""The hold sweeper's rows keep the response, turn, thread and MCP tool of the call they close (SPEC §9.4, §12)."""

from __future__ import annotations

from tollway.domain.recovery import recovery_terms, sweep_outcome
from tollway.domain.usage import NO_LABELS, CallLabels, CallStatus

_CANDIDATES = {"m1": {"input": 1_000, "output": 2_000, "cached": None, "provider_id": "p1", "upstream_model": "u"}}
LABELS = CallLabels(response_id="resp_1", iteration=2, thread_id="t-1", mcp_app=None, mcp_tool=None, mcp_free=None)


def test_checkpointed_and_expired_holds_keep_their_labels() -> None:
    terms = recovery_terms("slug", "response", None, {}, 400, _CANDIDATES, LABELS)
    interrupted, _, captured = sweep_outcome("req_1", "plat", "eu", terms, {"model_id": "m1", "delivered_bytes": 40})
    expired, _, released = sweep_outcome("req_2", "plat", "eu", terms, None)
    assert captured and not released
    assert interrupted.status is CallStatus.INTERRUPTED and expired.error_code == "hold_expired"
    for record in (interrupted, expired):
        assert (record.response_id, record.iteration, record.thread_id) == ("resp_1", 2, "t-1")
        assert (record.mcp_app, record.mcp_tool, record.mcp_free) == (None, None, None)


def test_calls_without_labels_keep_their_terms_unchanged() -> None:
    assert "labels" not in recovery_terms("slug", "chat.completion", None, {}, 10, _CANDIDATES)
    record, _, _ = sweep_outcome("req", "plat", None, recovery_terms("s", "x", None, {}, 1, _CANDIDATES), None)
    assert CallLabels.from_columns({k: getattr(record, k) for k in NO_LABELS.columns()}) == NO_LABELS


def test_malformed_labels_read_as_none() -> None:
    bad = {"response_id": 5, "iteration": True, "thread_id": ["x"], "mcp_app": "app", "mcp_free": "yes"}
    assert CallLabels.from_columns(bad) == CallLabels(mcp_app="app")
    assert CallLabels.from_columns("nope") == NO_LABELS
    mcp = CallLabels(mcp_app="github", mcp_tool="search", mcp_free=True)
    assert CallLabels.from_columns(mcp.columns()) == mcp
