"""Configuration from the environment, through pydantic-settings only; one prefix per service."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

PROJECT_ROOT = Path(__file__).resolve().parents[2]


class BrokerSettings(BaseSettings):
    """``ZEROERRAND_AMQP_URL``: the RabbitMQ every service and the CLI talk to."""

    model_config = SettingsConfigDict(env_prefix="ZEROERRAND_")

    amqp_url: str = "amqp://guest:guest@127.0.0.1:5672/"


class RouterSettings(BaseSettings):
    """``ZEROERRAND_ROUTER_*``: the router service."""

    model_config = SettingsConfigDict(env_prefix="ZEROERRAND_ROUTER_")

    rules_dir: Path = PROJECT_ROOT / "rules"
    prefetch: int = Field(default=32, ge=1, description="agreements in flight per router replica")
    watch_rules: bool = True
    reload_debounce_ms: int = Field(default=300, ge=0)
