"""Configuration from the environment, through pydantic-settings only; one prefix per service."""

from __future__ import annotations

import re
import ssl
from pathlib import Path
from typing import Literal
from urllib.parse import parse_qsl, unquote, urlsplit

from pydantic import AliasChoices, Field, FilePath, SecretStr, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

PROJECT_ROOT = Path(__file__).resolve().parents[2]
DEVELOPMENT_WEBHOOK_SECRET = "zeroerrand-dev-secret"
# aiormq reads TLS files from these query options of the URL; the settings below say them instead
_AMQP_TLS_QUERY = {"cafile": "ZEROERRAND_AMQP_CA_FILE", "capath": "ZEROERRAND_AMQP_CA_FILE",
                   "cadata": "ZEROERRAND_AMQP_CA_FILE", "certfile": "ZEROERRAND_AMQP_CERT_FILE",
                   "keyfile": "ZEROERRAND_AMQP_KEY_FILE", "no_verify_ssl": None}


class SettingsError(ValueError):
    """A setting, or a combination of settings, that cannot work; the message names the variable,
    says what is wrong with it and what to do (in Chinese, then in English)."""


KIB = 1024
# Largest body a consumer reads; a larger one is parked unread (kind ``too_large``). A real agreement
# is about 2 KB, an event 2.5 KB, a request under 1 KB; the largest the models allow (a delivery of
# 50 results of 500 characters) is about 110 KB.
MAX_AGREEMENT_BYTES = 256 * KIB
MAX_EVENT_BYTES = 128 * KIB
MAX_REQUEST_BYTES = 128 * KIB


def split_urls(urls: str) -> list[str]:
    """``ZEROERRAND_AMQP_URL`` as a list: one URL, or several separated by commas (a comma inside a
    password must be written ``%2C``)."""
    found = [url.strip() for url in urls.split(",") if url.strip()]
    if not found:
        raise ValueError("no AMQP URL given")
    return found


def mask_url(url: str) -> str:
    """The URL with its password replaced by ``***``, for messages and logs: ``amqp://u:***@h/``,
    ``mongodb://u:***@h1,h2/?replicaSet=rs0`` (several hosts, which ``urlsplit`` cannot take apart),
    and the password of a client key in the query (``tlsCertificateKeyFilePassword=***``), and each of
    several AMQP URLs separated by commas."""
    masked = re.sub(r"(^|,)([a-z][a-z0-9+.-]*://[^:/@,]*):[^@/]*@", r"\1\2:***@", url, flags=re.IGNORECASE)
    return re.sub(r"([?&]tlsCertificateKeyFilePassword=)[^&]*", r"\1***", masked, flags=re.IGNORECASE)


class BrokerUnavailable(ConnectionError):
    """The first connection to RabbitMQ failed (raised by ``services.common.bus``); the message
    says where, why and which setting to look at (a certificate not trusted, a client
    certificate missing or refused, a port that speaks TLS or does not)."""


def mask_urls_in(text: str) -> str:
    """``text`` (an error message, a log line) with the password of every URL in it masked."""
    return re.sub(r"\b([a-z][a-z0-9+.-]*://[^:/@\s'\"]*):[^@/\s'\"]*@", r"\1:***@", text, flags=re.IGNORECASE)


class BrokerSettings(BaseSettings):
    """``ZEROERRAND_AMQP_URL``: the RabbitMQ every service and the CLI talk to. For a cluster, the
    URLs of its nodes separated by commas (``amqp://u:p@rabbit-1:5672/,amqp://u:p@rabbit-2:5672/``;
    a comma in a password is written ``%2C``): a service connects to the first that answers and,
    when that connection is lost, tries the next one in the list (then the one after, wrapping
    around) until one answers; quorum queues keep the messages while a node is away.

    ``ZEROERRAND_AMQP_RECONNECT_INTERVAL_S``: seconds between two attempts to reconnect (1).

    TLS: an ``amqps://`` URL, with ``ZEROERRAND_AMQP_CA_FILE`` (the CA certificates, PEM, that
    signed the server's certificate; default: the system's trusted CAs) and, for a server that
    asks for a client certificate, ``ZEROERRAND_AMQP_CERT_FILE`` and ``ZEROERRAND_AMQP_KEY_FILE``
    (PEM; the key may be in the certificate file, then the key file is not needed). The server's
    certificate and its host name (the URL's host, in the certificate's subject alternative names)
    are always verified. See ``docs/security.md``.

    ``ZEROERRAND_TRUSTED_PUBLISHERS``: the RabbitMQ users whose events the notifier and the ledger
    accept on ``zeroerrand.events`` (the router's and the evaluation service's; a JSON list).
    Default: the user of (the first) ``amqp_url`` (one user for every service, as in local development).
    """

    model_config = SettingsConfigDict(env_prefix="ZEROERRAND_")

    amqp_url: str = "amqp://guest:guest@127.0.0.1:5672/"
    amqp_ca_file: Path | None = None
    amqp_cert_file: Path | None = None
    amqp_key_file: Path | None = None
    amqp_reconnect_interval_s: float = Field(default=1.0, gt=0)
    trusted_publishers: list[str] | None = None

    def trusted(self) -> frozenset[str]:
        return frozenset(self.trusted_publishers or [urlsplit(self.first_url).username or "guest"])

    @property
    def first_url(self) -> str:
        """The first of the URLs (the one a single-node setting names)."""
        return split_urls(self.amqp_url)[0]

    @property
    def uses_tls(self) -> bool:
        return urlsplit(self.first_url).scheme.lower() == "amqps"

    def ssl_context(self) -> ssl.SSLContext | None:
        """The TLS context of an ``amqps://`` URL (server certificate and host name verified,
        the client certificate loaded if one is set); ``None`` for ``amqp://``. ``SettingsError``
        names the setting that cannot work, and why."""
        where = mask_url(self.amqp_url)
        files = {"ZEROERRAND_AMQP_CA_FILE": self.amqp_ca_file, "ZEROERRAND_AMQP_CERT_FILE": self.amqp_cert_file,
                 "ZEROERRAND_AMQP_KEY_FILE": self.amqp_key_file}
        for option, _ in parse_qsl(urlsplit(self.first_url).query, keep_blank_values=True):
            if option in _AMQP_TLS_QUERY:
                instead = _AMQP_TLS_QUERY[option]
                raise SettingsError(
                    f"ZEROERRAND_AMQP_URL（{where}）含 TLS 选项 {option}，本系统不读它："
                    + (f"请改用 {instead}" if instead else "服务器证书总要验证，不能关闭")
                    + f" / the URL option {option} is not used: "
                    + (f"set {instead} instead" if instead else "the server's certificate is always verified"))
        if not self.uses_tls:
            given = [name for name, value in files.items() if value is not None]
            if given:
                raise SettingsError(
                    f"已设置 {'、'.join(given)}，但 ZEROERRAND_AMQP_URL（{where}）是不加密的 amqp://：请改用 amqps://"
                    f"（RabbitMQ 的 TLS 端口，通常 5671）/ {', '.join(given)} set but the URL is plain amqp://: use amqps://")
            return None
        for name, value in files.items():
            if value is not None and not value.is_file():
                raise SettingsError(f"{name}={value} 不存在或不是文件 / {name}={value}: no such file")
        if self.amqp_key_file is not None and self.amqp_cert_file is None:
            raise SettingsError("已设置 ZEROERRAND_AMQP_KEY_FILE 而没有 ZEROERRAND_AMQP_CERT_FILE：请同时给出客户端证书 "
                                "/ ZEROERRAND_AMQP_KEY_FILE set without ZEROERRAND_AMQP_CERT_FILE")
        try:
            # verify_mode CERT_REQUIRED and check_hostname: the defaults of a client context
            context = ssl.create_default_context(ssl.Purpose.SERVER_AUTH,
                                                 cafile=str(self.amqp_ca_file) if self.amqp_ca_file else None)
        except (ssl.SSLError, OSError) as exc:
            raise SettingsError(f"ZEROERRAND_AMQP_CA_FILE={self.amqp_ca_file} 不是 PEM 格式的 CA 证书：{exc} "
                                f"/ not a PEM CA certificate file: {exc}") from exc
        if self.amqp_cert_file is not None:
            try:
                context.load_cert_chain(str(self.amqp_cert_file),
                                        str(self.amqp_key_file) if self.amqp_key_file else None)
            except (ssl.SSLError, OSError) as exc:
                raise SettingsError(
                    f"客户端证书 ZEROERRAND_AMQP_CERT_FILE={self.amqp_cert_file}、私钥 ZEROERRAND_AMQP_KEY_FILE="
                    f"{self.amqp_key_file or '（未设置：须在证书文件中）'} 无法载入（PEM 格式、证书与私钥须配对、私钥不能加密）："
                    f"{exc} / the client certificate and key cannot be loaded: {exc}") from exc
        return context


class RouterSettings(BaseSettings):
    """``ZEROERRAND_ROUTER_*``: the router service."""

    model_config = SettingsConfigDict(env_prefix="ZEROERRAND_ROUTER_")

    rules_dir: Path = PROJECT_ROOT / "rules"
    prefetch: int = Field(default=32, ge=1, description="agreements in flight per router replica")
    watch_rules: bool = True
    reload_debounce_ms: int = Field(default=300, ge=0)
    max_agreement_bytes: int = Field(default=MAX_AGREEMENT_BYTES, ge=4 * KIB,
                                     description="largest agreement.signed body routed; a larger one is parked")
    # a candidate rules version is checked in a child process within these bounds (the repository's
    # rules take 0.3 s and 260 MB of address space), so an operator hears within 5 s of saving; at
    # start, when nothing routes yet, it may take up to start_check_timeout_s
    check_timeout_s: float = Field(default=3.0, gt=0, description="seconds a rules check may take")
    check_memory_mb: int = Field(default=512, ge=128, description="address space of the rules check, MiB")
    start_check_timeout_s: float = Field(default=60.0, gt=0)
    # each activated version's files are archived in the store (services/router/versions.py); the
    # router routes whether or not the store answers, and retries the archive this often
    archive_rules: bool = True
    archive_retry_s: float = Field(default=5.0, gt=0)
    # one project, one record (services/router/registry.py): the agreements taken, by id and by
    # project revision, in the store, where every replica sees them. ``memory`` keeps them in the
    # process only (forgotten at restart, not shared by replicas): for tests, never for production.
    # Routing an agreement waits for the store; while it cannot be reached the agreement is retried.
    agreement_registry: Literal["store", "memory"] = "store"


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
    # how long an operation waits for the embedded store to answer before it fails as an outage
    # (PyMongo's serverSelectionTimeoutMS; MongoDB's is 10 s, or the URL's own)
    embedded_selection_timeout_s: float = Field(default=2.0, gt=0)


class NotifierSettings(BaseSettings):
    """``ZEROERRAND_NOTIFIER_*``: the notifier service and its delivery channels."""

    model_config = SettingsConfigDict(env_prefix="ZEROERRAND_NOTIFIER_")

    rules_dir: Path = PROJECT_ROOT / "rules"
    # at most 64: PyMongo 4.20's async client was seen to stall with ~100 operations in flight on
    # one client (replies left unread in the socket); the look-ups are limited apart (16 at once),
    # and two group-commit batches of 32 keep the store busy
    prefetch: int = Field(default=64, ge=1, le=64, description="events in flight")
    webhook_secret: SecretStr = Field(default=SecretStr(DEVELOPMENT_WEBHOOK_SECRET),
                                      description="HMAC-SHA256 key of the webhook signature; the default, "
                                                  "known to everyone, is accepted in development only")
    webhook_timeout_s: float = Field(default=5.0, gt=0)
    # e-mail (SMTP): without smtp_host an e-mail notification ends failed, with the reason
    smtp_host: str | None = Field(default=None, description="the SMTP server that takes the e-mail notifications")
    smtp_port: int = Field(default=587, ge=1, le=65535)
    smtp_username: str | None = None
    smtp_password: SecretStr | None = None
    smtp_from: str = Field(default="零跑腿 <zeroerrand@localhost>",
                           description="From: of the e-mail notifications (an address the SMTP server may send as)")
    smtp_security: Literal["starttls", "tls", "none"] = Field(
        default="starttls", description="starttls (port 587), tls (implicit TLS, port 465) or none (a local relay)")
    smtp_timeout_s: float = Field(default=30.0, gt=0, description="seconds one e-mail may take to send")
    smtp_ca_file: FilePath | None = Field(default=None, description="CA certificates (PEM) that signed the SMTP "
                                                                    "server's certificate; default: the system's")
    # SMS (an HTTP gateway): without sms_gateway_url an SMS notification ends failed, with the reason
    sms_gateway_url: str | None = Field(default=None, description="POST JSON {id, to, text} here; 2xx = accepted")
    sms_gateway_token: SecretStr | None = Field(default=None, description="sent as Authorization: Bearer <token>")
    sms_timeout_s: float = Field(default=10.0, gt=0)
    max_attempts: int = Field(default=5, ge=1, description="attempts of an external channel (webhook, e-mail, "
                                                           "SMS) before the final failed state")
    backoff_base_s: float = Field(default=2.0, ge=0)
    backoff_max_s: float = Field(default=300.0, ge=0)
    poll_interval_s: float = Field(default=5.0, gt=0, description="delivery round even when not woken")
    delivery_concurrency: int = Field(default=8, ge=1)
    max_event_bytes: int = Field(default=MAX_EVENT_BYTES, ge=4 * KIB,
                                 description="largest event body read; a larger one is parked")

    @field_validator("smtp_host", "smtp_username", "smtp_password", "smtp_ca_file", "sms_gateway_url",
                     "sms_gateway_token", mode="before")
    @classmethod
    def _empty_is_unset(cls, value: object) -> object:
        """``ZEROERRAND_NOTIFIER_SMTP_HOST=`` (as a deployment passes an unset variable) means not set."""
        return None if isinstance(value, str) and not value.strip() else value


class EvaluationSettings(BaseSettings):
    """``ZEROERRAND_EVALUATION_*``: the evaluation service (ledger, overdue sweep, annual evaluation)."""

    model_config = SettingsConfigDict(env_prefix="ZEROERRAND_EVALUATION_")

    rules_dir: Path = PROJECT_ROOT / "rules"
    prefetch: int = Field(default=64, ge=1, le=256, description="events in flight (and requests, on their own queue): "
                          "more in flight lets the ledger write more of them together (one project at a time)")
    sweep_interval_s: float = Field(default=300.0, gt=0, description="how often overdue items are looked for")
    sweep: bool = Field(default=True, description="whether this service sweeps for overdue items at all (off for "
                                                  "services that replay a simulated year, which sweeps as of its own days)")
    max_event_bytes: int = Field(default=MAX_EVENT_BYTES, ge=4 * KIB,
                                 description="largest event body read; a larger one is parked")
    max_request_bytes: int = Field(default=MAX_REQUEST_BYTES, ge=4 * KIB,
                                   description="largest request body read; a larger one is parked")


Environment = Literal["development", "production"]


class RuntimeSettings(BaseSettings):
    """``ZEROERRAND_ENVIRONMENT``: ``production`` (the default) or ``development``. Only in
    development may the notifier run with the development webhook secret everyone knows (a
    developer's machine, the tests); anywhere else the secret must be set."""

    model_config = SettingsConfigDict(env_prefix="ZEROERRAND_")

    environment: Environment = "production"

    @classmethod
    def load(cls) -> RuntimeSettings:
        """From the environment; ``SettingsError`` for a value that is neither environment."""
        try:
            return cls()
        except ValidationError as exc:
            raise SettingsError("ZEROERRAND_ENVIRONMENT 只能是 development 或 production（默认 production）"
                                " / ZEROERRAND_ENVIRONMENT must be development or production") from exc

    @property
    def development(self) -> bool:
        return self.environment == "development"


DEVELOPMENT_CONSOLE_KEY = "zeroerrand-dev-console-key"


class ConsoleSettings(BaseSettings):
    """``ZEROERRAND_CONSOLE_*``: the web console (服务台) and the enterprise's access links.

    ``secret_key`` signs the session cookies and derives each project's access code (see
    ``services.common.access``); the notifier needs the same key to put working links in its
    notices. The default, known to everyone, is accepted in development only."""

    model_config = SettingsConfigDict(env_prefix="ZEROERRAND_CONSOLE_")

    host: str = "127.0.0.1"
    port: int = Field(default=8080, ge=0, le=65535)
    public_url: str = Field(default="", description="the console's address as the enterprise reaches it (links in "
                                                    "notices); default http://HOST:PORT")
    forwarded_allow_ips: str | None = Field(default=None, description="addresses of the proxies whose "
                                            "X-Forwarded-For the console believes (comma-separated); unset: none")
    secret_key: SecretStr = Field(default=SecretStr(DEVELOPMENT_CONSOLE_KEY))
    secure_cookies: bool | None = Field(default=None, description="Secure flag of the cookies; default: "
                                                                  "on when public_url is https")
    session_hours: float = Field(default=8.0, gt=0, le=24 * 7)
    max_attempts: int = Field(default=5, ge=1, description="failed logins or access codes per window and key")
    attempt_window_s: int = Field(default=300, ge=10)
    outcome_wait_s: float = Field(default=5.0, ge=0, description="how long a form waits for the ledger's answer")
    max_body_bytes: int = Field(default=64 * KIB, ge=KIB, description="largest form accepted")
    # its own bounds (services/console/load.py): requests handled at once (each reads the store one
    # query at a time, so this bounds its store reads in flight), how many more may wait and for how
    # long; beyond that a 503 with Retry-After, never a timeout
    max_in_flight: int = Field(default=8, ge=1, le=1024, description="requests handled at once")
    max_queued: int = Field(default=500, ge=0, description="requests waiting for a slot; more are answered 503")
    queue_wait_s: float = Field(default=20.0, gt=0, description="longest wait for a slot before a 503")
    retry_after_s: int = Field(default=5, ge=1, le=3600, description="Retry-After of a 503")
    nice: int = Field(default=5, ge=0, le=19, description="under zeroerrand up: the console process's "
                                                          "nice increment, so that routing gets the CPU first")

    @model_validator(mode="after")
    def _default_public_url(self) -> ConsoleSettings:
        if not self.public_url:
            host = "127.0.0.1" if self.host in ("0.0.0.0", "::", "") else self.host
            self.public_url = f"http://{host}:{self.port}"
        return self

    @property
    def cookies_secure(self) -> bool:
        return self.public_url.startswith("https://") if self.secure_cookies is None else self.secure_cookies


def check_console_key(settings: ConsoleSettings, runtime: RuntimeSettings, who: str) -> None:
    """Refuses (``SettingsError``) the development console key outside development, and an empty or
    short one anywhere: whoever knows it can open every project and forge every session."""
    key = settings.secret_key.get_secret_value()
    if len(key) < 16:
        raise SettingsError(f"{who}未启动：ZEROERRAND_CONSOLE_SECRET_KEY 太短（至少 16 个字符）"
                            f" / {who} not started: ZEROERRAND_CONSOLE_SECRET_KEY shorter than 16 characters")
    if key == DEVELOPMENT_CONSOLE_KEY and not runtime.development:
        raise SettingsError(
            f"{who}未启动：服务台密钥仍是开发用默认值（人人可见），而运行环境是 {runtime.environment}。"
            "请设置 ZEROERRAND_CONSOLE_SECRET_KEY 为长随机字符串（如 python3 -c \"import secrets; "
            "print(secrets.token_hex(32))\"），通知服务与服务台须用同一个；仅在开发机上可设 ZEROERRAND_ENVIRONMENT=development。"
            f" / {who} refused to start: ZEROERRAND_CONSOLE_SECRET_KEY is the development default and "
            f"ZEROERRAND_ENVIRONMENT is {runtime.environment}")



GUEST_USER = "guest"
SERVICE_NAMES_ZH = {"router": "路由服务", "notifier": "通知服务", "evaluation": "评价服务", "console": "服务台"}


def amqp_users(settings: BrokerSettings) -> list[str]:
    """The RabbitMQ user of each URL of ``ZEROERRAND_AMQP_URL`` (a URL without one logs in as
    ``guest``, as aiormq does)."""
    return [unquote(urlsplit(url).username or "") or GUEST_USER for url in split_urls(settings.amqp_url)]


def check_broker_user(settings: BrokerSettings, runtime: RuntimeSettings, service: str) -> None:
    """Refuses (``SettingsError``) RabbitMQ's ``guest`` user (the default URL) outside development:
    its password is known to everyone, and a broker that lets it in from elsewhere than localhost
    gives it every permission; each service connects as its own user (docs/security.md)."""
    if GUEST_USER not in amqp_users(settings) or runtime.development:
        return
    zh = SERVICE_NAMES_ZH.get(service, service)
    raise SettingsError(
        f"{zh}未启动：ZEROERRAND_AMQP_URL（{mask_url(settings.amqp_url)}）使用 RabbitMQ 的 guest 用户（默认账号，"
        f"密码人人可见），而运行环境是 {runtime.environment}。请让每个服务以自己的 RabbitMQ 用户连接"
        f"（如 amqp://zeroerrand-{service}:密码@主机:5672/zeroerrand；用户与权限见 deploy/rabbitmq/users.sh 与 "
        "docs/security.md）；仅在开发机上可设 ZEROERRAND_ENVIRONMENT=development。"
        f" / {service} refused to start: ZEROERRAND_AMQP_URL uses RabbitMQ's guest user and ZEROERRAND_ENVIRONMENT "
        f"is {runtime.environment}; connect as the service's own user (deploy/rabbitmq/users.sh), or set "
        "ZEROERRAND_ENVIRONMENT=development on a developer's machine")


class OperationsSettings(BaseSettings):
    """``ZEROERRAND_METRICS_*`` and ``ZEROERRAND_LOG_FORMAT``: what a service process shows its operators.

    One HTTP endpoint per process (``zeroerrand up`` runs every service in one process, so one
    endpoint serves them all): ``/metrics`` (Prometheus text) and ``/health``. Without
    ``ZEROERRAND_METRICS_PORT`` there is none (two services on one machine would otherwise fight
    for a default port); ``0`` takes a free port, which the start logs."""

    model_config = SettingsConfigDict(env_prefix="ZEROERRAND_")

    metrics_host: str = Field(default="127.0.0.1", description="address of /metrics and /health")
    metrics_port: int | None = Field(default=None, ge=0, le=65535,
                                     description="port of /metrics and /health; unset: no endpoint; 0: any free port")
    log_format: Literal["json", "text"] = Field(default="json", description="json: one JSON object a line")
    queue_sample_interval_s: float = Field(default=5.0, gt=0, description="how often consumer lag is sampled")
    health_timeout_s: float = Field(default=1.0, gt=0, description="how long the store has to answer a ping")

    @field_validator("metrics_port", mode="before")
    @classmethod
    def _empty_is_unset(cls, value: object) -> object:
        return None if isinstance(value, str) and not value.strip() else value
