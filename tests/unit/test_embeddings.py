"""Embeddings and moderations, pure parts (SPEC §19): request validation, the prompt bound and its context cap,
the embeddings and per-request tariffs (exact nano-dollars), vector encodings, and the OpenAI and Gemini
translations against golden JSON."""

from __future__ import annotations

import base64
import dataclasses
import struct
from typing import Any

import pytest

from tests.unit.golden import candidate, check, load
from tollway.domain.catalog import ProviderKind
from tollway.domain.embedding_request import parse_embedding_request, parse_moderation_request
from tollway.domain.holds import HoldQuote, Refusal, quote_hold
from tollway.domain.pricing import Prices, Usage
from tollway.domain.tariffs import MODERATIONS, EmbeddingTariff, Metered
from tollway.domain.upstream import EmbeddingResult
from tollway.domain.vectors import encode, to_base64, to_floats
from tollway.errors import InvalidRequest, UpstreamError
from tollway.providers.gemini import embeddings as gemini
from tollway.providers.openai import embeddings as openai_embeddings
from tollway.providers.openai import moderations
from tollway.services.inference.embeddings import estimated_prompt_tokens, render


def _embedding_row(
    kind: ProviderKind, input_nanos: int, window: int | None = None, per_request: int | None = None
) -> Any:
    base = candidate(kind, "text-embedding-3-small")
    model = dataclasses.replace(
        base.model, prices=Prices(input_nanos, 0), context_window=window, price_per_request_nanos=per_request
    )
    return dataclasses.replace(base, model=model)


def test_input_shapes() -> None:
    text = parse_embedding_request({"model": "e", "input": "héllo"})
    assert (text.texts, text.tokens, text.input_bounds, text.count) == (("héllo",), None, (6,), 1)
    texts = parse_embedding_request({"model": "e", "input": ["a", "bcd"]})
    assert (texts.texts, texts.prompt_bound()) == (("a", "bcd"), 4)
    one = parse_embedding_request({"model": "e", "input": [1, 2, 3]})
    assert (one.tokens, one.count, one.prompt_bound()) == (((1, 2, 3),), 1, 3)
    many = parse_embedding_request({"model": "e", "input": [[1, 2, 3], [4]]})
    assert (many.tokens, many.count, many.prompt_bound(), many.prompt_bound(2)) == (((1, 2, 3), (4,)), 2, 4, 3)
    assert many.encoding_format == "float" and not many.encoding_format_given
    given = parse_embedding_request({"model": "e", "input": "x", "encoding_format": "base64", "dimensions": None})
    assert (given.encoding_format, given.encoding_format_given, given.dimensions) == ("base64", True, None)
    assert len(parse_embedding_request({"model": "e", "input": ["a"] * 2048}).input_bounds) == 2048


@pytest.mark.parametrize(
    ("body", "param"),
    [
        ({"model": "e", "input": "a", "extra": 1}, "extra"),
        ({"model": "", "input": "a"}, "model"),
        ({"model": "e", "input": None}, "input"),
        ({"model": "e", "input": [None]}, "input[0]"),
        ({"model": "e", "input": [[1], [2**31]]}, "input[1][0]"),
        ({"model": "e", "input": [1.5]}, "input[0]"),
        ({"model": "e", "input": [[1]] * 2049}, "input"),
        ({"model": "e", "input": "a", "dimensions": True}, "dimensions"),
        ({"model": "e", "input": "a", "dimensions": 65_537}, "dimensions"),
        ({"model": "e", "input": "a", "encoding_format": "FLOAT"}, "encoding_format"),
        ({"model": "e", "input": "a", "user": "u" * 257}, "user"),
    ],
)
def test_bad_embedding_fields(body: dict[str, Any], param: str) -> None:
    with pytest.raises(InvalidRequest) as error:
        parse_embedding_request(body)
    assert error.value.param == param


def test_moderation_inputs() -> None:
    assert parse_moderation_request({"input": "x"}).model is None
    assert parse_moderation_request({"input": ["a", "b"], "model": "m"}).input == ["a", "b"]
    parts = [{"type": "text", "text": "t"}, {"type": "image_url", "image_url": {"url": "data:image/png;base64,AA"}}]
    assert parse_moderation_request({"input": parts}).input == parts
    with pytest.raises(InvalidRequest) as error:
        parse_moderation_request({"input": [{"type": "image_url", "image_url": {"url": "https://x", "detail": "low"}}]})
    assert error.value.param == "input[0].image_url.detail"


def test_embedding_tariff_holds_the_capped_bound_and_bills_prompt_tokens_only() -> None:
    request = parse_embedding_request({"model": "e", "input": ["x" * 100, "y" * 10]})
    tariff = EmbeddingTariff(request.input_bounds)
    uncapped = _embedding_row(ProviderKind.OPENAI, 20_000_000)  # $0.02 per Mtok
    capped = _embedding_row(ProviderKind.OPENAI, 20_000_000, window=50)
    assert (tariff.prompt_tokens(uncapped), tariff.prompt_tokens(capped)) == (110, 60)
    terms = tariff.terms(capped, 0, request.prompt_bound())
    assert (terms.prompt_tokens, terms.output_limit) == (60, 0)
    # 60 tokens × 20 n$ = 1,200 n$; with 15 % markup ⌈1,380⌉ n$
    assert terms.worst(1, 0, 1500) == (1_200, 1_380)
    assert quote_hold((terms,), 1, 1500, 10_000, 1_380) == HoldQuote(1_200, 1_380, None)  # never clamped
    assert quote_hold((terms,), 1, 1500, 10_000, 1_379) is Refusal.BUDGET
    assert quote_hold((terms,), 1, 1500, 1_199, None) is Refusal.WALLET
    # completion tokens are never billed, whatever a provider reports
    assert tariff.price(capped, Metered(Usage(7, 99)), 1500) == (140, 161)
    # ⌈7 × 13 / 10⁶ · 10⁶⌉: sub-nano prices round up once
    assert tariff.price(_embedding_row(ProviderKind.OPENAI, 13), Metered(Usage(7, 0)), 0) == (1, 1)


def test_moderation_tariff_is_the_price_per_request() -> None:
    row = _embedding_row(ProviderKind.OPENAI, 0, per_request=1_000_000)  # $0.001
    assert MODERATIONS.terms(row, 0, 0).worst(1, 0, 1500) == (1_000_000, 1_150_000)
    assert MODERATIONS.price(row, Metered(Usage(0, 0), units=1), 1500) == (1_000_000, 1_150_000)
    free = _embedding_row(ProviderKind.OPENAI, 0, per_request=0)
    assert MODERATIONS.price(free, Metered(Usage(0, 0), units=1), 1500) == (0, 0)
    assert MODERATIONS.recovery(row)["request"] == 1_000_000


def test_estimates() -> None:
    text = parse_embedding_request({"model": "e", "input": ["x" * 41, "yz"]})
    assert estimated_prompt_tokens(text) == 11  # ⌈43 / 4⌉
    arrays = parse_embedding_request({"model": "e", "input": [[1, 2, 3], [4]]})
    assert estimated_prompt_tokens(arrays) == 4  # token arrays count exactly


def test_vector_encodings_round_trip_as_float32_little_endian() -> None:
    values = [0.5, -0.25, 1.0 / 3.0]
    encoded = to_base64(values)
    assert base64.b64decode(encoded) == struct.pack("<3f", *values)
    assert to_floats(encoded) == list(struct.unpack("<3f", struct.pack("<3f", *values)))
    assert encode(values, "float") is values and encode(encoded, "base64") is encoded
    assert encode(encoded, "float") == to_floats(encoded)
    for bad in ("not base64!", base64.b64encode(b"abc").decode()):
        with pytest.raises(ValueError):
            to_floats(bad)
    for encoding in ("float", "base64"):
        with pytest.raises(ValueError):
            encode([0.5, "x"], encoding)  # type: ignore[list-item]


def test_render_is_openais_list() -> None:
    assert render([[0.5], "AAAAPw=="], "emb", 3) == {
        "object": "list",
        "data": [
            {"object": "embedding", "index": 0, "embedding": [0.5]},
            {"object": "embedding", "index": 1, "embedding": "AAAAPw=="},
        ],
        "model": "emb",
        "usage": {"prompt_tokens": 3, "total_tokens": 3},
    }


def _result_json(result: EmbeddingResult) -> dict[str, Any]:
    return {"vectors": list(result.vectors), "prompt_tokens": result.prompt_tokens}


def test_openai_payload_and_answer() -> None:
    row = candidate(ProviderKind.OPENAI_COMPATIBLE, "bge-m3")
    request = parse_embedding_request({"model": "e", "input": [[1, 2]], "dimensions": 8, "user": "u"})
    assert openai_embeddings.build_payload(request, row) == {
        "model": "bge-m3",
        "input": [[1, 2]],
        "dimensions": 8,
        "user": "u",
    }
    fixture = load("openai", "embeddings_response")
    check("openai", "embeddings_response", _result_json(openai_embeddings.parse_embeddings(fixture["input"], "p", 2)))


@pytest.mark.parametrize(
    "raw",
    [
        {"data": [{"index": 0, "embedding": [0.1]}]},  # one vector for two inputs
        {"data": [{"index": 0, "embedding": [0.1]}, {"index": 0, "embedding": [0.2]}]},  # repeated index
        {"data": [{"index": 0, "embedding": [0.1]}, {"index": 1, "embedding": {}}]},
        {"data": "nope"},
    ],
)
def test_malformed_openai_answers_are_upstream_errors(raw: dict[str, Any]) -> None:
    with pytest.raises(UpstreamError):
        openai_embeddings.parse_embeddings(raw, "p", 2)


def test_absurd_or_missing_usage_is_left_to_the_estimate() -> None:
    data = [{"index": 0, "embedding": [0.1]}]
    for usage in (None, {"prompt_tokens": -1}, {"prompt_tokens": 2**31}, {"prompt_tokens": True}):
        assert openai_embeddings.parse_embeddings({"data": data, "usage": usage}, "p", 1).prompt_tokens is None


def test_gemini_translation_golden() -> None:
    fixture = load("gemini", "embeddings_request")["input"]
    request = parse_embedding_request(fixture["body"])
    assert request.texts is not None
    check("gemini", "embeddings_request", gemini.build_payloads(request.texts, fixture["model"], request.dimensions))
    response = load("gemini", "embeddings_response")["input"]
    check("gemini", "embeddings_response", _result_json(gemini.parse_batch(response, "g", 2)))
    with_usage = load("gemini", "embeddings_response_usage")["input"]
    check("gemini", "embeddings_response_usage", _result_json(gemini.parse_batch(with_usage, "g", 1)))
    assert gemini.batch_path("models/x y") == "/v1beta/models/models%2Fx%20y:batchEmbedContents"


def test_gemini_batches_of_100_and_joined_usage() -> None:
    texts = tuple(f"t{i}" for i in range(250))
    payloads = gemini.build_payloads(texts, "m", None)
    assert [len(p["requests"]) for p in payloads] == [100, 100, 50]
    assert "outputDimensionality" not in payloads[0]["requests"][0]
    assert payloads[2]["requests"][-1]["content"] == {"parts": [{"text": "t249"}]}
    joined = gemini.join([EmbeddingResult(([1.0],), 3), EmbeddingResult(([2.0],), 4)])
    assert (joined.vectors, joined.prompt_tokens) == (([1.0], [2.0]), 7)
    assert gemini.join([EmbeddingResult(([1.0],), 3), EmbeddingResult(([2.0],), None)]).prompt_tokens is None
    with pytest.raises(UpstreamError):
        gemini.parse_batch({"embeddings": [{"values": []}]}, "g", 1)


def test_gemini_refuses_token_arrays_only() -> None:
    row = candidate(ProviderKind.GEMINI)
    assert gemini.refusal(parse_embedding_request({"model": "e", "input": "x", "user": "u"}), row) is None
    refused = gemini.refusal(parse_embedding_request({"model": "e", "input": [1, 2]}), row)
    assert refused is not None and (refused.code, refused.param) == ("unsupported_parameter", "input")
    assert "gemini-main" in refused.message


def test_moderation_payload_and_answer() -> None:
    row = candidate(ProviderKind.OPENAI, "omni-moderation-latest")
    request = parse_moderation_request({"input": ["a", "b"], "model": "mod"})
    assert moderations.build_payload(request, row) == {"model": "omni-moderation-latest", "input": ["a", "b"]}
    parsed = moderations.parse_moderation({"id": "modr-1", "results": [{"flagged": False}]}, "p")
    assert (parsed.id, parsed.results) == ("modr-1", [{"flagged": False}])
    assert moderations.parse_moderation({"results": [{"flagged": True}]}, "p").id is None
    with pytest.raises(UpstreamError):
        moderations.parse_moderation({"results": []}, "p")
