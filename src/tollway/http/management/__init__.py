"""management layer."""
