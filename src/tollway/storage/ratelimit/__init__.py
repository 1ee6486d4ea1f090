"""Rate-limit backends: in-process (embedded mode) and Redis (scale-out)."""
