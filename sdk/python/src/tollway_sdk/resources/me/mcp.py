"""``MyMCP`` and ``AsyncMyMCP``, written in ``tollway_sdk._async`` (the sync class is generated from it)."""

from tollway_sdk._async.resources.me.mcp import AsyncMyMCP
from tollway_sdk._sync.resources.me.mcp import MyMCP

__all__ = ["AsyncMyMCP", "MyMCP"]
