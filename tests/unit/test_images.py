"""Image generation (SPEC §7.7): request validation of both shapes, the provider translations (OpenAI and ASI:One
wire shapes, refusals), rendering url / b64_json, and image holds (n × price, never clamped, §9.3)."""

from __future__ import annotations

from typing import Any

import aiohttp
import pytest

from tests.unit.golden import candidate
from tollway.domain.catalog import ProviderKind
from tollway.domain.holds import HoldQuote, Refusal, image_terms, quote_hold
from tollway.domain.image_request import ImageRequest, parse_asi1_image_request, parse_image_request
from tollway.domain.ports.providers import ImageAdapter
from tollway.domain.pricing import Prices
from tollway.domain.upstream import GeneratedImage
from tollway.errors import InvalidRequest, UnsupportedParameter, UpstreamError
from tollway.providers.asi1 import images as asi1_images
from tollway.providers.openai import images as openai_images
from tollway.providers.registry import AdapterRegistry
from tollway.services.inference.images import render_image
from tollway.settings import Settings

BASE = {"model": "img", "prompt": "a red fox"}


def _request(**extra: Any) -> ImageRequest:
    return parse_image_request({**BASE, **extra})


# -- validation ------------------------------------------------------------------------------------------------


def test_openai_shape_defaults() -> None:
    request = _request()
    assert (request.model, request.prompt, request.n, request.size) == ("img", "a red fox", 1, None)
    assert request.response_format == "url" and not request.response_format_given
    assert (request.quality, request.style, request.user) == (None, None, None)


def test_openai_shape_all_fields() -> None:
    request = _request(n=8, size="1792x1024", response_format="b64_json", quality="hd", style="vivid", user="u-1")
    assert (request.n, request.size, request.response_format, request.response_format_given) == (
        8,
        "1792x1024",
        "b64_json",
        True,
    )
    assert (request.quality, request.style, request.user) == ("hd", "vivid", "u-1")
    assert _request(size="auto").size == "auto"
    assert _request(n=None, size=None, quality=None).n == 1  # null counts as absent


@pytest.mark.parametrize(
    ("body", "param"),
    [
        ({"prompt": "x"}, "model"),
        ({"model": 5, "prompt": "x"}, "model"),
        ({"model": "img"}, "prompt"),
        ({**BASE, "prompt": ""}, "prompt"),
        ({**BASE, "prompt": "x" * 32_001}, "prompt"),
        ({**BASE, "prompt": ["a"]}, "prompt"),
        ({**BASE, "n": 0}, "n"),
        ({**BASE, "n": 9}, "n"),
        ({**BASE, "n": 2.0}, "n"),
        ({**BASE, "n": True}, "n"),
        ({**BASE, "size": "big"}, "size"),
        ({**BASE, "size": "1024x"}, "size"),
        ({**BASE, "size": "0x1024"}, "size"),
        ({**BASE, "size": 1024}, "size"),
        ({**BASE, "response_format": "png"}, "response_format"),
        ({**BASE, "quality": "Ultra HD"}, "quality"),
        ({**BASE, "quality": ""}, "quality"),
        ({**BASE, "style": ["vivid"]}, "style"),
        ({**BASE, "user": 1}, "user"),
        ({**BASE, "user": "u" * 257}, "user"),
        ({**BASE, "background": "transparent"}, "background"),
        ({**BASE, "stream": True}, "stream"),
    ],
)
def test_openai_shape_rejects_naming_the_field(body: dict[str, Any], param: str) -> None:
    with pytest.raises(InvalidRequest) as error:
        parse_image_request(body)
    assert error.value.param == param
    assert error.value.code == "invalid_request" and error.value.status == 400


def test_prompt_limit_is_inclusive() -> None:
    assert len(_request(prompt="é" * 32_000).prompt) == 32_000


def test_asi1_shape() -> None:
    request = parse_asi1_image_request({"prompt": "a cat"})
    assert (request.shape, request.model, request.n, request.size, request.response_format) == (
        "asi1",
        None,
        1,
        "1024x1024",
        "url",
    )
    assert parse_asi1_image_request({"prompt": "a", "size": "1024x1792", "model": "m"}).size == "1024x1792"


@pytest.mark.parametrize(
    ("body", "param"),
    [
        ({}, "prompt"),
        ({"prompt": "a", "size": "512x512"}, "size"),
        ({"prompt": "a", "size": "auto"}, "size"),
        ({"prompt": "a", "model": ""}, "model"),
        ({"prompt": "a", "n": 2}, "n"),
        ({"prompt": "a", "response_format": "url"}, "response_format"),
    ],
)
def test_asi1_shape_rejects_naming_the_field(body: dict[str, Any], param: str) -> None:
    with pytest.raises(InvalidRequest) as error:
        parse_asi1_image_request(body)
    assert error.value.param == param


# -- OpenAI wire ---------------------------------------------------------------------------------------------------


def test_openai_payload_forwards_everything_and_format_only_when_given() -> None:
    row = candidate(ProviderKind.OPENAI, "dall-e-3")
    assert openai_images.build_payload(_request(), row) == {"model": "dall-e-3", "prompt": "a red fox", "n": 1}
    full = _request(n=2, size="1024x1024", response_format="url", quality="hd", style="natural", user="u")
    assert openai_images.build_payload(full, row) == {
        "model": "dall-e-3",
        "prompt": "a red fox",
        "n": 2,
        "size": "1024x1024",
        "response_format": "url",
        "quality": "hd",
        "style": "natural",
        "user": "u",
    }


def test_openai_parse() -> None:
    raw = {"created": 1, "data": [{"b64_json": "QUJD", "revised_prompt": "r"}, {"url": "https://x/1.png"}]}
    result = openai_images.parse_images(raw, "p")
    assert result.images == (
        GeneratedImage(b64_json="QUJD", revised_prompt="r"),
        GeneratedImage(url="https://x/1.png"),
    )
    assert openai_images.parse_images({"data": []}, "p").images == ()


@pytest.mark.parametrize("raw", [{}, {"data": {}}, {"data": ["x"]}, {"data": [{"url": ""}]}, {"data": [{"b64": "x"}]}])
def test_openai_parse_rejects_malformed_answers(raw: dict[str, Any]) -> None:
    with pytest.raises(UpstreamError):
        openai_images.parse_images(raw, "p")


async def test_openai_kinds_refuse_nothing() -> None:
    request = _request(n=8, quality="hd", style="vivid")
    async with aiohttp.ClientSession() as session:
        registry = AdapterRegistry(session, Settings(database_url="sqlite:///unused.db"))
        for kind in (ProviderKind.OPENAI, ProviderKind.OPENAI_COMPATIBLE):
            adapter = registry.images(kind)
            assert adapter is not None and adapter.image_refusal(request, candidate(kind)) is None


# -- ASI:One wire --------------------------------------------------------------------------------------------------


def test_asi1_payload() -> None:
    row = candidate(ProviderKind.ASI1, "asi1-mini")
    alias = parse_asi1_image_request({"prompt": "p", "size": "1792x1024"})
    assert asi1_images.build_payload(alias, row) == {"prompt": "p", "model": "asi1-mini", "size": "1792x1024"}
    assert asi1_images.build_payload(_request(size="auto"), row) == {"prompt": "a red fox", "model": "asi1-mini"}


@pytest.mark.parametrize(
    ("extra", "param"), [({"n": 2}, "n"), ({"quality": "hd"}, "quality"), ({"style": "vivid"}, "style")]
)
def test_asi1_refuses_n_quality_style(extra: dict[str, Any], param: str) -> None:
    row = candidate(ProviderKind.ASI1)
    refusal = asi1_images.refusal(_request(**extra), row)
    assert isinstance(refusal, UnsupportedParameter)
    assert refusal.param == param and refusal.code == "unsupported_parameter"
    assert row.provider.slug in refusal.message
    assert asi1_images.refusal(_request(n=1), row) is None


def test_asi1_parse() -> None:
    raw = {
        "status": 1,
        "message": "Success",
        "created": 1_700_000_000_000,
        "images": [{"url": "data:image/png;base64,QQ=="}],
    }
    assert asi1_images.parse_images(raw, "p").images == (GeneratedImage(url="data:image/png;base64,QQ=="),)


@pytest.mark.parametrize(
    "raw",
    [
        {"status": 0, "message": "content policy", "images": []},
        {"status": True, "images": []},
        {"status": 1, "images": None},
        {"status": 1, "images": [{"url": 3}]},
        {"status": 1, "images": ["x"]},
    ],
)
def test_asi1_parse_rejects_failures(raw: dict[str, Any]) -> None:
    with pytest.raises(UpstreamError):
        asi1_images.parse_images(raw, "p")


# -- rendering -----------------------------------------------------------------------------------------------------


def test_render_url_and_b64() -> None:
    assert render_image(GeneratedImage(b64_json="QQ=="), "url", "p") == {"url": "data:image/png;base64,QQ=="}
    assert render_image(GeneratedImage(url="https://h/1.png"), "url", "p") == {"url": "https://h/1.png"}
    assert render_image(GeneratedImage(b64_json="QQ==", revised_prompt="r"), "b64_json", "p") == {
        "b64_json": "QQ==",
        "revised_prompt": "r",
    }
    assert render_image(GeneratedImage(url="data:image/png;base64,QQ=="), "b64_json", "p") == {"b64_json": "QQ=="}


def test_hosted_url_cannot_become_base64() -> None:
    with pytest.raises(UpstreamError) as error:
        render_image(GeneratedImage(url="https://h/1.png"), "b64_json", "p")
    assert error.value.upstream_status == 200  # the provider answered: fall back, do not retry


# -- holds ---------------------------------------------------------------------------------------------------------

CENTS = 10_000_000  # $0.01 per image


def test_image_hold_is_n_times_price_with_markup_on_the_budget() -> None:
    terms = (image_terms("a", Prices(0, 0), 4 * CENTS),)
    quote = quote_hold(terms, n=2, markup_bps=1500, wallet_available=10**12, budget_available=10**12)
    assert quote == HoldQuote(wallet_nanos=80_000_000, budget_nanos=92_000_000, clamped_limit=None)


def test_image_hold_takes_the_dearest_candidate() -> None:
    terms = (image_terms("a", Prices(0, 0), CENTS), image_terms("b", Prices(0, 0), 3 * CENTS))
    quote = quote_hold(terms, n=3, markup_bps=0, wallet_available=10**12, budget_available=None)
    assert quote == HoldQuote(wallet_nanos=90_000_000, budget_nanos=0, clamped_limit=None)


def test_image_hold_is_never_clamped() -> None:
    terms = (image_terms("a", Prices(0, 0), CENTS),)
    assert quote_hold(terms, n=2, markup_bps=0, wallet_available=2 * CENTS - 1, budget_available=None) is Refusal.WALLET
    refused = quote_hold(terms, n=2, markup_bps=1, wallet_available=10**12, budget_available=2 * CENTS)
    assert refused is Refusal.BUDGET  # the charge with markup is 20,002,000 n$ (⌈cost·(10⁴+b)/10⁴⌉)
    exact = quote_hold(terms, n=2, markup_bps=0, wallet_available=2 * CENTS, budget_available=2 * CENTS)
    assert exact == HoldQuote(2 * CENTS, 2 * CENTS, None)


# -- capability ----------------------------------------------------------------------------------------------------


async def test_registry_knows_which_kinds_generate_images() -> None:
    async with aiohttp.ClientSession() as session:
        registry = AdapterRegistry(session, Settings(database_url="sqlite:///unused.db"))
        capable = {kind for kind in ProviderKind if registry.images(kind) is not None}
        assert capable == {ProviderKind.OPENAI, ProviderKind.OPENAI_COMPATIBLE, ProviderKind.ASI1}
        assert all(isinstance(registry.images(kind), ImageAdapter) for kind in capable)
        assert registry.images(ProviderKind.ASI1) is not registry.images(ProviderKind.OPENAI)
