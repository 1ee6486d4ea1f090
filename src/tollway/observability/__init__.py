"""Metrics, structured logs and the per-request context they share (SPEC §13.4, §15)."""
