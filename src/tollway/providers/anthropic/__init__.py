"""Anthropic Messages API (kind anthropic)."""
