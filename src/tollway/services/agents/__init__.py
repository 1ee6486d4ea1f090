"""Agent use cases beyond a single model call: threads (SPEC §16.4)."""
