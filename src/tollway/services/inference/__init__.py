"""Inference use cases, all on one paid-call lifecycle (``call.py``): chat completions, Responses, images; the
routing catalog, retries and fallback, and the circuit breakers they share."""
