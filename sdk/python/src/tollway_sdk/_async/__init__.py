"""The client (``AsyncTollway``), its resources and its request loop. Only the modules of ``tollway_sdk._async`` are
written by hand: ``scripts/gen_sync.py`` generates ``tollway_sdk._sync`` from them (docs/sdk.md, "How the sync client
is made")."""
