"""The MCP routes that are not management: the OAuth callback (SPEC §16.2); later the MCP proxy (§16.3)."""
