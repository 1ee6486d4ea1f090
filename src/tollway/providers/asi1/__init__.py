"""ASI:One (kind asi1): the OpenAI dialect with ASI:One's extensions."""
