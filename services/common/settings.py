"""Configuration from the environment, through pydantic-settings only; one prefix per service."""

from __future__ import annotations

import re
from pathlib import Path
from urllib.parse import urlsplit

from pydantic import AliasChoices, Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict

PROJECT_ROOT = Path(__file__).resolve().parents[2]


def mask_url(url: str) -> str:
    """The URL with its password replaced by ``***``, for messages and logs: ``amqp://u:***@h/``,
    ``mongodb://u:***@h1,h2/?replicaSet=rs0`` (several hosts, which ``urlsplit`` cannot take apart),
    and each of several AMQP URLs separated by commas."""
    return re.sub(r"(^|,)([a-z][a-z0-9+.-]*://[^:/@,]*):[^@/]*@", r"\1\2:***@", url, flags=re.IGNORECASE)


class BrokerSettings(BaseSettings):
    """``ZEROERRAND_AMQP_URL``: the RabbitMQ every service and the CLI talk to. For a cluster, the
    URLs of its nodes separated by commas (``amqp://u:p@rabbit-1:5672/,amqp://u:p@rabbit-2:5672/``;
    a comma in a password is written ``%2C``): a service connects to the first that answers and,
    when that connection is lost, tries the next one in the list (then the one after, wrapping
    around) until one answers; quorum queues keep the messages while a node is away.

    ``ZEROERRAND_AMQP_RECONNECT_INTERVAL_S``: seconds between two attempts to reconnect (1).

    ``ZEROERRAND_TRUSTED_PUBLISHERS``: the RabbitMQ users whose events the notifier and the ledger
    accept on ``zeroerrand.events`` (the router's and the evaluation service's; a JSON list).
    Default: the user of (the first) ``amqp_url`` (one user for every service, as in local development).
    """

    model_config = SettingsConfigDict(env_prefix="ZEROERRAND_")

    amqp_url: str = "amqp://guest:guest@127.0.0.1:5672/"
    amqp_reconnect_interval_s: float = Field(default=1.0, gt=0)
    trusted_publishers: list[str] | None = None

    def trusted(self) -> frozenset[str]:
        return frozenset(self.trusted_publishers or [urlsplit(self.amqp_url.split(",")[0].strip()).username or "guest"])


class RouterSettings(BaseSettings):
    """``ZEROERRAND_ROUTER_*``: the router service."""

    model_config = SettingsConfigDict(env_prefix="ZEROERRAND_ROUTER_")

    rules_dir: Path = PROJECT_ROOT / "rules"
    prefetch: int = Field(default=32, ge=1, description="agreements in flight per router replica")
    watch_rules: bool = True
    reload_debounce_ms: int = Field(default=300, ge=0)


class StoreSettings(BaseSettings):
    """Where the services keep their data.

    ``MONGODB_URL`` (or ``ZEROERRAND_MONGODB_URL``) selects a real MongoDB (production: a replica
    set). Without it, the embedded store (FerretDB on a private PostgreSQL cluster) is started as a
    child process, its data in ``ZEROERRAND_DATA_DIR/store``: ``ZEROERRAND_FERRETDB`` names the
    FerretDB binary (default: the one ``scripts/setup.sh`` builds into ``.venv/bin``) and
    ``ZEROERRAND_POSTGRES_BIN`` the directory of PostgreSQL's ``postgres`` and ``initdb``
    (default: ``pg_config --bindir``, else the newest ``/usr/lib/postgresql/N/bin``).
    """

    model_config = SettingsConfigDict(env_prefix="ZEROERRAND_")

    mongodb_url: str | None = Field(default=None, validation_alias=AliasChoices("MONGODB_URL", "ZEROERRAND_MONGODB_URL"))
    database: str = "zeroerrand"
    data_dir: Path = PROJECT_ROOT / "var"
    ferretdb: Path = PROJECT_ROOT / ".venv" / "bin" / "ferretdb"
    postgres_bin: Path | None = None
    embedded_start_timeout_s: float = 60.0


class NotifierSettings(BaseSettings):
    """``ZEROERRAND_NOTIFIER_*``: the notifier service and its delivery channels."""

    model_config = SettingsConfigDict(env_prefix="ZEROERRAND_NOTIFIER_")

    rules_dir: Path = PROJECT_ROOT / "rules"
    # at most 64: PyMongo 4.20's async client was seen to stall with ~100 operations in flight on
    # one client (replies left unread in the socket); the look-ups are limited apart (16 at once),
    # and two group-commit batches of 32 keep the store busy
    prefetch: int = Field(default=64, ge=1, le=64, description="events in flight")
    webhook_secret: SecretStr = Field(default=SecretStr("zeroerrand-dev-secret"),
                                      description="HMAC-SHA256 key of the webhook signature; set it in production")
    webhook_timeout_s: float = Field(default=5.0, gt=0)
    max_attempts: int = Field(default=5, ge=1, description="webhook attempts before the final failed state")
    backoff_base_s: float = Field(default=2.0, ge=0)
    backoff_max_s: float = Field(default=300.0, ge=0)
    poll_interval_s: float = Field(default=5.0, gt=0, description="delivery round even when not woken")
    delivery_concurrency: int = Field(default=8, ge=1)


class EvaluationSettings(BaseSettings):
    """``ZEROERRAND_EVALUATION_*``: the evaluation service (ledger, overdue sweep, annual evaluation)."""

    model_config = SettingsConfigDict(env_prefix="ZEROERRAND_EVALUATION_")

    rules_dir: Path = PROJECT_ROOT / "rules"
    prefetch: int = Field(default=16, ge=1, le=64, description="events in flight (and requests, on their own queue)")
    sweep_interval_s: float = Field(default=300.0, gt=0, description="how often overdue items are looked for")
