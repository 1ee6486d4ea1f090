"""openai layer."""
