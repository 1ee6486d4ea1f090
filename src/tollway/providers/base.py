"""What adapters share beyond the contract of ``domain/ports/providers.py``: the error for requests a provider's
format cannot express."""

from __future__ import annotations

from tollway.errors import UnsupportedParameter


class InvalidForProvider(UnsupportedParameter):
    """A request this provider's format cannot express, such as tool-call arguments that are not a JSON object for
    Anthropic or Gemini (SPEC §7.4): 400 ``invalid_request`` at the offending path. It subclasses
    UnsupportedParameter so that ``refusal()`` can report it: the row is then dropped like any ✗, and the error
    reaches the client only when no candidate that can take the request remains (SPEC §8 step 3b)."""

    code = "invalid_request"
