"""Tollway: a self-hosted, multi-tenant, OpenAI-compatible LLM gateway."""

__version__ = "0.1.0"
