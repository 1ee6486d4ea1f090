"""Agent use cases (SPEC §16): end users' MCP connections and threads; later the Responses tool loop and MCP
sessions."""
