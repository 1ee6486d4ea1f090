"""The Redis client of the hot path: one pipelined connection per instance, packed and parsed by hiredis."""
