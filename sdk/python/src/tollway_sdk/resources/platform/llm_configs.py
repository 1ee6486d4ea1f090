"""``LLMConfigs`` and ``AsyncLLMConfigs``, written in ``tollway_sdk._async`` (the sync class is generated from it)."""

from tollway_sdk._async.resources.platform.llm_configs import AsyncLLMConfigs
from tollway_sdk._sync.resources.platform.llm_configs import LLMConfigs

__all__ = ["AsyncLLMConfigs", "LLMConfigs"]
