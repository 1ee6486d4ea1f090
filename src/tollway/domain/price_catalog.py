"""LiteLLM's price catalogue (``model_prices_and_context_window.json``) read into model-row changes (SPEC §19). Pure:
the catalogue and the current rows in, the plan out (rows to update field by field, rows to create, entries that
match nothing or are malformed); ``services/management/price_import.py`` applies it in one transaction.

Format: a JSON object of model name -> entry; prices are USD per token (``input_cost_per_token``,
``output_cost_per_token``, ``cache_read_input_token_cost``, ``cache_creation_input_token_cost``), USD per image
(``output_cost_per_image``) or per request (``input_cost_per_request``); limits ``max_input_tokens`` and
``max_output_tokens``; ``litellm_provider`` and ``mode``. ``sample_spec`` documents the format and is skipped.

Rules (docs/prices.md):
- An entry is for a provider when its ``litellm_provider`` is that provider's kind (``openai``, ``anthropic``,
  ``gemini``) or, for ``openai_compatible`` and ``asi1`` providers, the provider's slug (``groq``, ``xai``, ...).
- Its model names are its key and, when the key starts with ``<litellm_provider>/``, the key without that prefix; a
  row of the provider whose ``upstream_model`` is one of them is matched (the exact key wins over the short name).
- Fields the entry has are set; fields it lacks are left as they are (never nulled); 0 for a token limit means "not
  given". Per-token prices become n$ per Mtok exactly from their decimal text (no binary float arithmetic); a price
  with more digits than n$ per Mtok can hold is malformed, unless its text is a binary float's rendering (15 or more
  significant digits), which is rounded to the nearest n$ per Mtok.
- With a provider selected, a ``chat`` entry for it that matches no row creates an inactive row (slug and upstream
  model: the short name): an import never starts serving a model by itself.
- A malformed entry that would change or create a row blocks the whole import; entries that match nothing are
  reported as unknown (those of other providers or kinds are only counted).
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from decimal import ROUND_HALF_UP, Decimal, InvalidOperation
from typing import Any, Final

from tollway.domain.catalog import ModelRow, Provider, ProviderKind
from tollway.domain.money import MAX_NANOS, format_usd, nanos_to_json_number

SKIPPED_KEYS: Final = frozenset({"sample_spec"})
_KIND_NAMES: Final = {
    ProviderKind.OPENAI: "openai",
    ProviderKind.ANTHROPIC: "anthropic",
    ProviderKind.GEMINI: "gemini",
}
IMAGE_KINDS: Final = frozenset({ProviderKind.OPENAI, ProviderKind.OPENAI_COMPATIBLE, ProviderKind.ASI1})
_PER_MTOK: Final = Decimal(10**15)  # USD per token -> n$ per million tokens
_PER_UNIT: Final = Decimal(10**9)  # USD -> n$
_FLOAT_DIGITS: Final = 15  # a decimal text this long is a binary float's rendering, not a price someone wrote
_INT32_MAX: Final = 2**31 - 1
_MODEL_NAME_MAX: Final = 128


@dataclass(frozen=True, slots=True)
class _Field:
    name: str  # the model-row field (admin API name)
    source: str  # the catalogue's field
    unit: str  # "mtok" (USD per token -> n$ per Mtok), "usd" (USD -> n$) or "tokens"


FIELDS: Final = (
    _Field("input_price_per_mtok", "input_cost_per_token", "mtok"),
    _Field("output_price_per_mtok", "output_cost_per_token", "mtok"),
    _Field("cached_input_price_per_mtok", "cache_read_input_token_cost", "mtok"),
    _Field("cache_write_price_per_mtok", "cache_creation_input_token_cost", "mtok"),
    _Field("price_per_image", "output_cost_per_image", "usd"),
    _Field("price_per_request", "input_cost_per_request", "usd"),
    _Field("context_window", "max_input_tokens", "tokens"),
    _Field("max_output_tokens", "max_output_tokens", "tokens"),
)


class CatalogError(ValueError):
    """The catalogue as a whole is unusable (not JSON, not an object)."""


@dataclass(frozen=True, slots=True)
class Change:
    old: int | None
    new: int
    rounded: bool = False  # the catalogue's text was a binary float's rendering, rounded to n$ per Mtok


@dataclass(frozen=True, slots=True)
class RowUpdate:
    row: ModelRow
    provider: Provider
    entry: str
    changes: dict[str, Change]


@dataclass(frozen=True, slots=True)
class RowCreate:
    provider: Provider
    slug: str
    entry: str
    values: dict[str, int]  # field name -> n$ or tokens


@dataclass(frozen=True, slots=True)
class Problem:
    entry: str
    reason: str
    field: str | None = None  # the catalogue field at fault, for malformed entries

    @property
    def param(self) -> str:
        return self.entry if self.field is None else f"{self.entry}.{self.field}"


@dataclass(slots=True)
class ImportPlan:
    updates: list[RowUpdate] = field(default_factory=list)
    creates: list[RowCreate] = field(default_factory=list)
    unchanged: int = 0  # rows matched whose values already agree
    unknown: list[Problem] = field(default_factory=list)
    malformed: list[Problem] = field(default_factory=list)
    ignored: int = 0  # entries for no selected provider (other LiteLLM providers, sample_spec, ...)

    @property
    def applicable(self) -> bool:
        return not self.malformed


def parse_catalog(raw: bytes | str) -> dict[str, Any]:
    """The catalogue, every number exact: ``Decimal`` for fractions, ``int`` for integers."""
    try:
        value = json.loads(raw, parse_float=Decimal, parse_constant=_no_constant)
    except (ValueError, RecursionError) as exc:
        raise CatalogError(f"the catalogue is not valid JSON: {exc}") from None
    if not isinstance(value, dict):
        raise CatalogError("the catalogue must be a JSON object of model name -> entry.")
    return value


def _no_constant(name: str) -> None:
    raise ValueError(f"{name} is not a number")


def litellm_names(provider: Provider) -> str:
    """The ``litellm_provider`` whose entries are for ``provider``."""
    return _KIND_NAMES.get(provider.kind, provider.slug)


def model_names(key: str, litellm_provider: str) -> tuple[str, ...]:
    """The key, then the key without its ``<litellm_provider>/`` prefix when it has one."""
    prefix = litellm_provider + "/"
    if key.startswith(prefix) and len(key) > len(prefix):
        return key, key[len(prefix) :]
    return (key,)


def plan_import(
    catalog: Mapping[str, Any], providers: Sequence[Provider], rows: Sequence[ModelRow], *, create: bool
) -> ImportPlan:
    """What importing ``catalog`` into ``providers``' rows changes; ``create``: make rows for unmatched chat
    entries (only with one provider selected)."""
    plan = ImportPlan()
    by_name = {litellm_names(p): p for p in providers}
    rows_of: dict[str, dict[str, ModelRow]] = {p.id: {} for p in providers}
    slugs_of: dict[str, set[str]] = {p.id: set() for p in providers}
    for row in rows:
        if row.provider_id in rows_of:
            rows_of[row.provider_id][row.upstream_model] = row
            slugs_of[row.provider_id].add(row.slug)
    # Each entry of a selected provider, with its model names; exact names first, so that "x" beats "gemini/x".
    entries: list[tuple[int, str, dict[str, Any], Provider, tuple[str, ...]]] = []
    for key, entry in catalog.items():
        owner = entry.get("litellm_provider") if isinstance(entry, dict) else None
        provider = by_name.get(owner) if isinstance(owner, str) and key not in SKIPPED_KEYS else None
        if provider is None or not isinstance(entry, dict) or not isinstance(owner, str):
            plan.ignored += 1
            continue
        names = model_names(key, owner)
        entries.append((len(names), key, entry, provider, names))
    entries.sort(key=lambda e: e[0])
    taken: set[str] = set()  # rows already matched by a better entry
    for _, key, entry, provider, names in entries:
        matched = next((rows_of[provider.id][n] for n in names if n in rows_of[provider.id]), None)
        if matched is not None:
            if matched.id in taken:
                plan.ignored += 1  # the same model under its exact name is in the catalogue too
            else:
                taken.add(matched.id)
                _update(plan, key, entry, provider, matched)
        elif create and entry.get("mode") == "chat":
            _create(plan, key, entry, provider, names[-1], slugs_of[provider.id])
        else:
            shown = " or ".join(repr(n) for n in names)
            plan.unknown.append(Problem(key, f"no model row of provider '{provider.slug}' has upstream_model {shown}"))
    return plan


def _values(key: str, entry: Mapping[str, Any], kind: ProviderKind, plan: ImportPlan) -> dict[str, Change] | None:
    """The entry's values for the row fields it sets (n$ or tokens), or None after recording why it is malformed."""
    values: dict[str, Change] = {}
    for spec in FIELDS:
        if spec.source not in entry:
            continue
        if spec.name == "price_per_image" and kind not in IMAGE_KINDS:
            continue  # only openai-style kinds serve images (§4.2)
        raw = entry[spec.source]
        try:
            converted = _convert(raw, spec.unit)
        except ValueError as exc:
            plan.malformed.append(Problem(key, str(exc), spec.source))
            return None
        if converted is not None:
            values[spec.name] = Change(None, converted[0], converted[1])
    return values


def _convert(raw: object, unit: str) -> tuple[int, bool] | None:
    if unit == "tokens":
        if not isinstance(raw, int) or isinstance(raw, bool):
            raise ValueError(f"must be a whole number of tokens, got {_shown(raw)}")
        if raw == 0:
            return None  # LiteLLM writes 0 for "none" (moderation models' max_output_tokens)
        if not 1 <= raw <= _INT32_MAX:
            raise ValueError(f"must be between 1 and {_INT32_MAX}, got {raw}")
        return raw, False
    if isinstance(raw, bool) or not isinstance(raw, int | Decimal):
        raise ValueError(f"must be a number of USD, got {_shown(raw)}")
    value = Decimal(raw)
    if not value.is_finite() or value < 0:
        raise ValueError(f"must be a finite amount of at least 0, got {_shown(raw)}")
    scaled = value * (_PER_MTOK if unit == "mtok" else _PER_UNIT)
    rounded = False
    if scaled != scaled.to_integral_value():
        if len(value.as_tuple().digits) < _FLOAT_DIGITS:
            per = "n$ per million tokens" if unit == "mtok" else "n$"
            raise ValueError(f"{_shown(raw)} is not a whole number of {per} (at most 9 decimals in USD, §9.1)")
        try:
            scaled = scaled.quantize(Decimal(1), rounding=ROUND_HALF_UP)
        except InvalidOperation:
            raise ValueError(f"{_shown(raw)} is out of range") from None
        rounded = True
    nanos = int(scaled)
    if nanos > MAX_NANOS:
        raise ValueError(f"{_shown(raw)} is above 10^9 USD")
    return nanos, rounded


def _shown(raw: object) -> str:
    text = json.dumps(raw, default=str) if not isinstance(raw, Decimal) else str(raw)
    return text if len(text) <= 40 else text[:37] + "..."


def _update(plan: ImportPlan, key: str, entry: Mapping[str, Any], provider: Provider, row: ModelRow) -> None:
    values = _values(key, entry, provider.kind, plan)
    if values is None:
        return
    current = current_values(row)
    changes = {name: Change(current[name], c.new, c.rounded) for name, c in values.items() if current[name] != c.new}
    minimum = row.min_output_tokens or 1
    limit = changes["max_output_tokens"].new if "max_output_tokens" in changes else row.max_output_tokens
    if limit < minimum:
        plan.malformed.append(
            Problem(
                key, f"max_output_tokens {limit} is below the row's min_output_tokens {minimum}", "max_output_tokens"
            )
        )
        return
    if changes:
        plan.updates.append(RowUpdate(row, provider, key, changes))
    else:
        plan.unchanged += 1


def _create(
    plan: ImportPlan, key: str, entry: Mapping[str, Any], provider: Provider, name: str, slugs: set[str]
) -> None:
    missing = [s for s in ("input_cost_per_token", "output_cost_per_token", "max_output_tokens") if s not in entry]
    if missing:
        plan.unknown.append(Problem(key, f"no matching row, and no row can be created without {', '.join(missing)}"))
        return
    if len(name) > _MODEL_NAME_MAX or not all(c.isascii() and (c.isalnum() or c in "._:/-") for c in name):
        plan.unknown.append(Problem(key, f"no matching row, and {name!r} is not a valid model slug"))
        return
    if name in slugs:
        reason = f"no matching row, and provider '{provider.slug}' already has a row with slug {name!r}"
        plan.unknown.append(Problem(key, reason))
        return
    values = _values(key, entry, provider.kind, plan)
    if values is None:
        return
    if "max_output_tokens" not in values:
        plan.unknown.append(Problem(key, "no matching row, and no row can be created without max_output_tokens"))
        return
    slugs.add(name)
    plan.creates.append(RowCreate(provider, name, key, {n: c.new for n, c in values.items()}))


def current_values(row: ModelRow) -> dict[str, int | None]:
    """A row's importable fields, in n$ or tokens, by admin API name."""
    return {
        "input_price_per_mtok": row.prices.input_nanos,
        "output_price_per_mtok": row.prices.output_nanos,
        "cached_input_price_per_mtok": row.prices.cached_input_nanos,
        "cache_write_price_per_mtok": row.prices.cache_write_nanos,
        "price_per_image": row.price_per_image_nanos,
        "price_per_request": row.price_per_request_nanos,
        "context_window": row.context_window,
        "max_output_tokens": row.max_output_tokens,
    }


def shown_value(name: str, value: int | None) -> str:
    """A field's value as the admin API writes it: USD for prices, a count for token limits."""
    if value is None:
        return "null"
    return str(value) if name in ("context_window", "max_output_tokens") else format_usd(value)


def _json_value(name: str, value: int | None) -> Any:
    if value is None or name in ("context_window", "max_output_tokens"):
        return value
    return nanos_to_json_number(value)


def report_body(plan: ImportPlan, provider: str | None, *, dry_run: bool, applied: bool) -> dict[str, Any]:
    """The import's report as JSON: per row each field's old and new value (USD for prices, counts for limits)."""

    def change(name: str, c: Change) -> dict[str, Any]:
        body = {"old": _json_value(name, c.old), "new": _json_value(name, c.new)}
        return {**body, "rounded": True} if c.rounded else body

    return {
        "object": "price_import",
        "dry_run": dry_run,
        "applied": applied,
        "provider": provider,
        "updated": [
            {
                "id": u.row.id,
                "slug": u.row.slug,
                "provider": u.provider.slug,
                "entry": u.entry,
                "changes": {name: change(name, c) for name, c in u.changes.items()},
            }
            for u in plan.updates
        ],
        "created": [
            {
                "slug": c.slug,
                "provider": c.provider.slug,
                "entry": c.entry,
                "values": {name: _json_value(name, v) for name, v in c.values.items()},
            }
            for c in plan.creates
        ],
        "unchanged": plan.unchanged,
        "unknown": [{"entry": p.entry, "reason": p.reason} for p in plan.unknown],
        "malformed": [{"entry": p.entry, "field": p.field, "reason": p.reason} for p in plan.malformed],
        "ignored": plan.ignored,
    }


def report_lines(plan: ImportPlan, *, dry_run: bool, applied: bool) -> list[str]:
    """The same report as text, one line per change or problem, then a summary."""
    lines: list[str] = []
    for u in plan.updates:
        fields = ", ".join(
            f"{n} {shown_value(n, c.old)} -> {shown_value(n, c.new)}{' (rounded)' if c.rounded else ''}"
            for n, c in u.changes.items()
        )
        lines.append(f"update {u.provider.slug}/{u.row.slug} (entry {u.entry}): {fields}")
    for c in plan.creates:
        fields = ", ".join(f"{n} {shown_value(n, v)}" for n, v in c.values.items())
        lines.append(f"create {c.provider.slug}/{c.slug} (entry {c.entry}, inactive): {fields}")
    lines.extend(f"unknown {p.entry}: {p.reason}" for p in plan.unknown)
    lines.extend(f"malformed {p.param}: {p.reason}" for p in plan.malformed)
    if dry_run:
        outcome = "dry run, nothing applied"
    elif applied:
        outcome = "applied"
    else:
        outcome = "nothing applied" if plan.malformed else "nothing to apply"
    lines.append(
        f"{len(plan.updates)} updated, {len(plan.creates)} created, {plan.unchanged} unchanged, "
        f"{len(plan.unknown)} unknown, {len(plan.malformed)} malformed, {plan.ignored} ignored: {outcome}"
    )
    return lines
