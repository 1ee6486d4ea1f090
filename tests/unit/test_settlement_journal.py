"""The settlement journal file (SPEC §9.4): append and fsync, atomic compaction, a torn last line, adoption of the
journal of an instance that is gone, and never of one whose owner still holds its lock."""

from __future__ import annotations

import fcntl
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tollway.domain.holds import Settlement
from tollway.domain.usage import CallStatus, UsageRecord
from tollway.storage.money.journal import SettlementJournal, decode, encode, read_entries


def _settlement(n: int) -> Settlement:
    record = UsageRecord(
        request_id=f"req_{n:032x}", platform_id="p1", end_user_id="u1", request_type="chat.completion",
        provider_id="prov", model="cent", provider_model="fake/echo", prompt_tokens=3, completion_tokens=n,
        cached_tokens=0, latency_ms=12, ttft_ms=4, cost_nanos=1_000 * n, charged_nanos=1_150 * n,
        status=CallStatus.SUCCESS, finish_reason="stop", error_code=None, token_count_method="reported",
        session_id=None, metadata={"k": "v"},
    )  # fmt: skip
    return Settlement(f"hold-{n}", record, 1_150 * n)


def test_an_entry_round_trips_exactly() -> None:
    settlement = _settlement(7)
    assert decode(encode(settlement).rstrip(b"\n")) == settlement


def test_append_is_on_disk_and_fsynced_before_it_returns(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    synced: list[int] = []
    real_fsync = os.fsync

    def spy(fd: int) -> None:
        synced.append(fd)
        real_fsync(fd)

    monkeypatch.setattr(os, "fsync", spy)
    journal = SettlementJournal(tmp_path / "journal", "inst-a")
    assert not (tmp_path / "journal").exists()  # nothing on disk until something is owed
    journal.append([_settlement(1), _settlement(2)])
    assert synced, "append must fsync"
    assert read_entries(journal.path) == [_settlement(1), _settlement(2)]
    journal.append([_settlement(2), _settlement(3)])  # an entry already journaled is not written twice
    assert read_entries(journal.path) == [_settlement(1), _settlement(2), _settlement(3)]
    journal.close()


def test_compaction_rewrites_atomically_and_an_empty_journal_disappears(tmp_path: Path) -> None:
    journal = SettlementJournal(tmp_path, "inst-a")
    journal.append([_settlement(1), _settlement(2), _settlement(3)])
    inode = journal.path.stat().st_ino
    journal.remove(["hold-2"])
    assert read_entries(journal.path) == [_settlement(1), _settlement(3)]
    assert journal.path.stat().st_ino != inode  # a new file renamed over the old one, never edited in place
    assert not list(tmp_path.glob(".*.new"))
    journal.append([_settlement(4)])  # appends go on after a compaction
    assert read_entries(journal.path) == [_settlement(1), _settlement(3), _settlement(4)]
    journal.remove(["hold-1", "hold-3", "hold-4", "unknown"])
    assert not journal.path.exists()
    journal.close()
    assert list(tmp_path.iterdir()) == []  # a clean exit with nothing owed leaves nothing behind


def test_a_torn_last_line_is_skipped_and_the_rest_survives(tmp_path: Path) -> None:
    path = tmp_path / "inst-x.journal"
    whole = encode(_settlement(1)) + encode(_settlement(2))
    path.write_bytes(whole + encode(_settlement(3))[:40])  # the crash cut the third write short
    assert read_entries(path) == [_settlement(1), _settlement(2)]
    path.write_bytes(whole + b"{not json}\n" + encode(_settlement(4)))
    assert read_entries(path) == [_settlement(1), _settlement(2), _settlement(4)]
    assert read_entries(tmp_path / "missing.journal") == []


def test_a_journal_whose_owner_is_gone_is_adopted_once(tmp_path: Path) -> None:
    # The owner is a real process killed with SIGKILL while holding its lock: the kernel frees the lock.
    script = (
        "import sys, time\n"
        "from pathlib import Path\n"
        "from tests.unit.test_settlement_journal import _settlement\n"
        "from tollway.storage.money.journal import SettlementJournal\n"
        "j = SettlementJournal(Path(sys.argv[1]), 'dead')\n"
        "j.append([_settlement(1), _settlement(2)])\n"
        "print('ready', flush=True)\n"
        "time.sleep(60)\n"
    )
    owner = subprocess.Popen([sys.executable, "-c", script, str(tmp_path)], stdout=subprocess.PIPE, cwd=os.getcwd())
    try:
        assert owner.stdout is not None and owner.stdout.readline().strip() == b"ready"
        live = SettlementJournal(tmp_path, "other")
        assert live.adopt_orphans() == []  # the owner holds its lock: alive, its journal is left alone
        owner.kill()
        owner.wait()
        assert live.adopt_orphans() == ["dead"]
        assert list(live.entries) == ["hold-1", "hold-2"]
        assert read_entries(live.path) == [_settlement(1), _settlement(2)]
        assert not (tmp_path / "dead.journal").exists() and not (tmp_path / "dead.lock").exists()
        assert SettlementJournal(tmp_path, "third").adopt_orphans() == []  # "other" holds its lock now
        live.close()
    finally:
        owner.kill()
        owner.wait()
        if owner.stdout is not None:
            owner.stdout.close()


def test_a_locked_journal_is_never_taken(tmp_path: Path) -> None:
    journal = SettlementJournal(tmp_path, "mine")
    journal.append([_settlement(5)])
    with (tmp_path / "mine.lock").open("rb") as lock, pytest.raises(BlockingIOError):
        fcntl.flock(lock.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
    journal.close()  # still owed: the files stay, unlocked, for the next instance
    assert read_entries(tmp_path / "mine.journal") == [_settlement(5)]
    heir = SettlementJournal(tmp_path, "heir")
    assert heir.adopt_orphans() == ["mine"]
    assert list(heir.entries) == ["hold-5"]
    heir.close()
