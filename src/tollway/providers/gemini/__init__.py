"""Google Gemini generateContent API (kind gemini)."""
