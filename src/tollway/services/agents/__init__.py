"""Agent use cases (SPEC §16): end users' MCP connections; later the Responses tool loop, MCP sessions, threads."""
