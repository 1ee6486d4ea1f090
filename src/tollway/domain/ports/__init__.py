"""Every interface the services need from the outside world, owned by the domain (SPEC layering; STYLE.md).

Storage and providers implement these Protocols; services depend on them only; ``app.py`` wires the concrete
classes. One module per concern:

- ``money``: the money writer (holds, settlements) of the inference call lifecycle
- ``ratelimit``: the rate-limit backends and the per-end-user limit source
- ``providers``: the upstream provider contract (chat, streams, images, native Responses) and the registry
- ``inference``: what the inference services read (API keys, the routing catalog, stored responses)
- ``management``: the unit of work and the repositories of the management use cases
- ``mcp``: MCP apps, end users' OAuth connections and states, the OAuth client (SPEC §16)
- ``operations``: readiness, store gauges, reconciliation, instance presence, the hold sweeper's scan
"""
