"""The MCP client: Tollway calling MCP servers (apps) over Streamable HTTP with the official ``mcp`` SDK."""
