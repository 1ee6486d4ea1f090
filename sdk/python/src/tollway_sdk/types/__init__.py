"""Typed models of every Tollway object. USD amounts are ``decimal.Decimal`` read exactly from the JSON text;
timestamps are timezone-aware ``datetime``."""

from tollway_sdk.types.admin import (
    CreatedPlatform,
    DefaultBudget,
    DefaultRateLimits,
    Difference,
    Model,
    Platform,
    PlatformSettings,
    PlatformWithWallet,
    PriceImport,
    Provider,
    Reconciliation,
)
from tollway_sdk.types.end_users import (
    Budget,
    BudgetChange,
    BudgetTransaction,
    CreatedEndUser,
    EffectiveRateLimits,
    EndUser,
    RateLimitOverride,
)
from tollway_sdk.types.keys import APIKey, CreatedAPIKey
from tollway_sdk.types.llm_configs import LLMConfig
from tollway_sdk.types.mcp import MCPApp, MCPAuth, MCPConfig, MCPConfigApp, MCPConnection, MCPConnectStart
from tollway_sdk.types.threads import PlatformThread, Thread, ThreadItem
from tollway_sdk.types.usage import EndUserUsage, UsageLog
from tollway_sdk.types.wallet import CheckoutSession, Wallet, WalletTopup, WalletTransaction, WalletWithTransactions
from tollway_sdk.types.webhooks import (
    CreatedWebhookEndpoint,
    DeliveryAttempt,
    SecretRotation,
    WebhookDelivery,
    WebhookEndpoint,
)

__all__ = [
    "APIKey",
    "Budget",
    "BudgetChange",
    "BudgetTransaction",
    "CheckoutSession",
    "CreatedAPIKey",
    "CreatedEndUser",
    "CreatedPlatform",
    "CreatedWebhookEndpoint",
    "DefaultBudget",
    "DefaultRateLimits",
    "DeliveryAttempt",
    "Difference",
    "EffectiveRateLimits",
    "EndUser",
    "EndUserUsage",
    "LLMConfig",
    "MCPApp",
    "MCPAuth",
    "MCPConfig",
    "MCPConfigApp",
    "MCPConnectStart",
    "MCPConnection",
    "Model",
    "Platform",
    "PlatformSettings",
    "PlatformThread",
    "PlatformWithWallet",
    "PriceImport",
    "Provider",
    "RateLimitOverride",
    "Reconciliation",
    "SecretRotation",
    "Thread",
    "ThreadItem",
    "UsageLog",
    "Wallet",
    "WalletTopup",
    "WalletTransaction",
    "WalletWithTransactions",
    "WebhookDelivery",
    "WebhookEndpoint",
]
