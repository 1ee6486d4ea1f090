"""Embedding vectors in the two encodings OpenAI's API answers with (SPEC §19): a JSON list of floats, or base64 of
the float32 little-endian bytes (``encoding_format: "base64"``, the ``openai`` SDK's default). Pure."""

from __future__ import annotations

import base64
import binascii
import sys
from array import array
from typing import Literal

Encoding = Literal["float", "base64"]


def to_base64(values: list[float]) -> str:
    """Each value rounded to float32, little-endian, base64: byte for byte what OpenAI sends. ValueError when a
    value is not a number."""
    try:
        packed = array("f", values)
    except TypeError as exc:
        raise ValueError("not a list of numbers") from exc
    if sys.byteorder != "little":  # pragma: no cover - every supported platform is little-endian
        packed.byteswap()
    return base64.b64encode(packed.tobytes()).decode("ascii")


def to_floats(encoded: str) -> list[float]:
    """The inverse of ``to_base64``; ValueError when ``encoded`` is not base64 of whole float32 values."""
    try:
        raw = base64.b64decode(encoded, validate=True)
    except binascii.Error as exc:
        raise ValueError("not base64") from exc
    if len(raw) % 4:
        raise ValueError("not a whole number of float32 values")
    values = array("f")
    values.frombytes(raw)
    if sys.byteorder != "little":  # pragma: no cover
        values.byteswap()
    return values.tolist()


def encode(vector: list[float] | str, encoding: Encoding) -> list[float] | str:
    """``vector`` (either encoding) in the encoding asked for; a vector already in it is returned unchanged once
    checked (ValueError when it is not numbers, or not base64 of float32 values)."""
    if encoding == "base64":
        return vector if isinstance(vector, str) else to_base64(vector)
    if isinstance(vector, str):
        return to_floats(vector)
    try:
        array("d", vector)  # the type check at C speed: every value a number
    except TypeError as exc:
        raise ValueError("not a list of numbers") from exc
    return vector
