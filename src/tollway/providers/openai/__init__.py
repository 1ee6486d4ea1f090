"""The OpenAI chat-completions dialect (kinds openai and openai_compatible)."""
