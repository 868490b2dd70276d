"""All settings in one typed place, read from `SLUICE_*` environment variables."""

from __future__ import annotations

import base64
import hashlib
import ipaddress
from functools import lru_cache
from typing import Literal

from pydantic import Field, SecretStr, ValidationInfo, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from sluice.endpoint_policy import EndpointPolicy, parse_networks
from sluice.setting_parsers import (
    parse_app_pairs,
    parse_apps,
    parse_ice_servers,
    parse_port_range,
    parse_secrets_keys,
    parse_webhooks,
)

DEV_APP_ID = "demo"
DEV_APP_SECRET = "demo"


# Development mode's key for header values at rest when SLUICE_SECRETS_KEY is unset: fixed
# and published (like the `demo:demo` app), so the dev API and workers agree on it.
DEV_SECRETS_KEY = base64.urlsafe_b64encode(
    hashlib.sha256(b"sluice development mode: this key is not a secret").digest()
)


class Settings(BaseSettings):
    """Every knob of every Sluice process. Units are in the names."""

    # Settings hold secrets: a value that fails validation is never echoed in the error.
    model_config = SettingsConfigDict(
        env_prefix="SLUICE_", extra="ignore", hide_input_in_errors=True
    )

    # --- deployment -------------------------------------------------------------
    dev: bool = Field(
        False, description="Development mode: demo app, loopback ICE, private endpoints."
    )
    apps: str = Field("", description="Apps and their secrets: `appId:secret,appId2:secret2`.")
    redis_url: str = Field(
        "redis://127.0.0.1:6379/0", description="Redis holding all shared state."
    )
    redis_timeout_s: float = Field(2.0, gt=0, description="Connect/IO timeout for Redis calls.")
    public_url: str = Field("http://127.0.0.1:8080", description="Base URL printed to users.")
    api_host: str = "127.0.0.1"
    api_port: int = 8080
    sfu_host: str = "127.0.0.1"
    sfu_port: int = 8081
    worker_health_host: str = Field(
        "127.0.0.1", description="Where a worker host serves /healthz, /readyz and /metrics."
    )
    worker_health_port: int = Field(
        8082, ge=0, le=65535, description="Port of the worker host's health server (0: none)."
    )
    sfu_url: str = Field(
        "http://127.0.0.1:8081",
        description=(
            "The sessions API used while no SFU node is registered in Redis: a single "
            "unregistered SFU, or a hosted Calls-compatible one."
        ),
    )
    sfu_nodes: int = Field(
        0,
        ge=0,
        description="SFU node processes `sluice sfu` runs (0: one per core; 1 in dev mode).",
    )
    sfu_advertise_host: str = Field(
        "",
        description="Host the API and other SFU nodes reach this machine's nodes at "
        "(default: SLUICE_SFU_HOST, or the host name when that is a wildcard).",
    )
    log_format: str = Field("auto", pattern="^(auto|json|console)$")
    log_level: str = "info"

    # --- adapters ---------------------------------------------------------------
    connect_timeout_s: float = Field(
        5.0, gt=0, description="Dialing an endpoint gives up after this."
    )
    pickup_timeout_s: float = Field(
        1.0,
        gt=0,
        description="A create with no free worker process answers no_capacity after this.",
    )
    close_timeout_s: float = Field(
        0.8,
        gt=0,
        description="How long close waits for the pipeline before closing the record itself.",
    )
    ws_close_timeout_s: float = Field(0.5, gt=0, description="Wait for the endpoint's close frame.")
    closed_retention_s: int = Field(
        86_400, gt=0, description="Closed adapters stay queryable this long."
    )
    max_body_bytes: int = Field(65_536, gt=0)
    app_max_adapters: int = Field(
        100, ge=0, description="Adapters one app may run at once (0: no limit)."
    )
    app_creates_per_s: int = Field(
        20, ge=0, description="Create requests one app may make per second (0: no limit)."
    )
    allow_private_endpoints: bool = Field(
        False, description="Endpoints may be on loopback/private networks (dev mode sets it)."
    )
    endpoint_allow_networks: str = Field(
        "", description="If set, endpoints must resolve into these CIDRs (comma-separated)."
    )
    endpoint_ca_bundle: str = Field(
        "", description="PEM file of CAs to verify wss:// endpoints with (default: system store)."
    )
    endpoint_deny_networks: str = Field(
        "", description="Endpoints resolving into these CIDRs are refused (comma-separated)."
    )

    ingest_buffer_s: float = Field(
        60.0, gt=0, description="Ingest playout buffer; when full, the socket is not read."
    )

    reconnect_window_s: float = Field(
        5.0,
        gt=0,
        description="Egress re-dials a lost endpoint for this long (unless the adapter "
        "sets reconnectWindowS).",
    )
    egress_resumes: int = Field(
        2,
        ge=0,
        description="Times an egress adapter whose process died is resumed by another worker.",
    )
    egress_backlog_s: float = Field(
        5.0,
        gt=0,
        description="Egress audio kept while the endpoint is away or slow (never less "
        "than the adapter's reconnect window).",
    )

    jpeg_quality: int = Field(
        75,
        ge=1,
        le=100,
        description="JPEG egress quality, 1-100 (higher: larger, sharper), unless the "
        "adapter sets quality.",
    )

    usage_retention_days: int = Field(
        400, gt=0, description="Hourly usage figures per app are kept this long."
    )

    # --- workers ----------------------------------------------------------------
    worker_processes: int = Field(8, ge=1, description="Adapter processes per worker host.")
    queue_name: str = "sluice-adapters"
    heartbeat_interval_s: float = Field(1.0, gt=0)
    event_loop: Literal["uvloop", "asyncio"] = Field(
        "uvloop",
        description="The event loop of pipelines, SFU nodes and the API: uvloop (libuv, "
        "cheaper per datagram) or the standard library's asyncio loop.",
    )
    worker_standby: bool = Field(
        True,
        description="Each idle worker process keeps the process of its next pipeline forked "
        "ahead, waiting: a create skips the fork (~10 ms). Off: forked when the create comes.",
    )
    pipeline_nice: int = Field(
        10,
        ge=0,
        le=19,
        description="Added to each pipeline process's nice value when it starts: on an "
        "overloaded machine the pipelines yield the CPU to what they all depend on (the SFU "
        "node, Redis, the API, the worker host) and fall behind evenly, rather than starve "
        "the SFU until every adapter on it fails. 0: no yielding.",
    )
    heartbeat_ttl_s: float = Field(3.0, gt=0, description="A pipeline silent this long is lost.")
    reap_interval_s: float = Field(1.0, gt=0)

    # --- WebRTC -----------------------------------------------------------------
    ice_loopback: bool = Field(
        False, description="Offer 127.0.0.1 host candidates (dev and tests)."
    )
    ice_servers: str = Field("", description="Comma-separated STUN/TURN URLs.")
    ice_username: str = Field("", description="Username for the TURN server of ice_servers.")
    ice_credential: SecretStr = Field(
        SecretStr(""), description="Password for the TURN server of ice_servers."
    )
    ice_udp_ports: str = Field(
        "",
        description="UDP ports (low-high) for ICE host candidates of the SFU and the "
        "pipelines; empty: any port the OS picks.",
    )
    sfu_announced_ip: str = Field(
        "",
        description="Public IP the SFU announces beside its host candidates (1:1 NAT).",
    )
    sfu_session_idle_timeout_s: float = Field(
        30.0, gt=0, description="An SFU session with no media this long is closed."
    )

    # --- endpoint trust and webhooks (extensions E6, E7) ---------------------------
    secrets_key: SecretStr = Field(
        SecretStr(""),
        description="Fernet keys, comma-separated, that encrypt adapters' header values in "
        "Redis: the first encrypts, any decrypts (rotation). Without one (outside "
        "development mode) creates with header values are refused.",
    )
    signing_secrets: SecretStr = Field(
        SecretStr(""),
        description="Apps' signing secrets, `appId:secret,...`: every dial and webhook of "
        "those apps is signed (Sluice-Timestamp, Sluice-Signature).",
    )
    webhooks: str = Field(
        "", description="Apps' webhook URLs, `appId:https://host/path,...` (no commas in URLs)."
    )
    webhook_processes: int = Field(
        2, ge=0, description="Webhook delivery processes per worker host (with SLUICE_WEBHOOKS)."
    )
    webhook_attempts: int = Field(
        10, ge=8, le=20, description="Attempts per webhook delivery (backoff 1, 2, 4, ... s)."
    )
    webhook_queue_name: str = Field(
        "sluice-webhooks", description="The RQ queue of webhook deliveries."
    )

    @field_validator("apps")
    @classmethod
    def _apps_parse(cls, value: str) -> str:
        parse_apps(value)
        return value

    @field_validator("webhooks")
    @classmethod
    def _webhooks_parse(cls, value: str) -> str:
        parse_webhooks(value)
        return value

    @field_validator("signing_secrets")
    @classmethod
    def _signing_secrets_parse(cls, value: SecretStr) -> SecretStr:
        parse_app_pairs(value.get_secret_value(), "SLUICE_SIGNING_SECRETS")
        return value

    @field_validator("secrets_key")
    @classmethod
    def _secrets_key_parse(cls, value: SecretStr) -> SecretStr:
        parse_secrets_keys(value.get_secret_value())
        return value

    @field_validator("endpoint_allow_networks", "endpoint_deny_networks")
    @classmethod
    def _networks_parse(cls, value: str) -> str:
        parse_networks(value)
        return value

    @field_validator("ice_udp_ports", "ice_servers")
    @classmethod
    def _ice_parse(cls, value: str, info: ValidationInfo) -> str:
        parse = parse_port_range if info.field_name == "ice_udp_ports" else parse_ice_servers
        parse(value)
        return value

    @field_validator("sfu_announced_ip")
    @classmethod
    def _announced_ip_parse(cls, value: str) -> str:
        if not value.strip():
            return ""
        try:
            address = ipaddress.ip_address(value.strip())
        except ValueError:
            raise ValueError(
                f"SLUICE_SFU_ANNOUNCED_IP {value!r} must be an IP address (not a host name)"
            ) from None
        if address.is_unspecified or address.is_multicast:
            raise ValueError(f"SLUICE_SFU_ANNOUNCED_IP {value!r} cannot receive media")
        return str(address)

    @model_validator(mode="after")
    def _dev_defaults(self) -> Settings:
        if self.heartbeat_ttl_s <= self.heartbeat_interval_s:
            raise ValueError("heartbeat_ttl_s must be longer than heartbeat_interval_s")
        turn = any(url.startswith("turn") for url in self.ice_server_urls)
        if turn and not (self.ice_username and self.ice_credential.get_secret_value()):
            raise ValueError(
                "SLUICE_ICE_SERVERS names a TURN server: set SLUICE_ICE_USERNAME and "
                "SLUICE_ICE_CREDENTIAL too"
            )
        if not self.dev and not parse_apps(self.apps):
            raise ValueError(
                "SLUICE_APPS is empty: set it to appId:secret pairs, or SLUICE_DEV=1 for a demo app"
            )
        return self

    @property
    def app_secrets(self) -> dict[str, str]:
        """appId → secret; development mode adds `demo:demo` unless `demo` is configured."""
        apps = parse_apps(self.apps)
        if self.dev:
            apps.setdefault(DEV_APP_ID, DEV_APP_SECRET)
        return apps

    @property
    def app_signing_secrets(self) -> dict[str, str]:
        """appId → the secret its dials and webhooks are signed with."""
        return parse_app_pairs(self.signing_secrets.get_secret_value(), "SLUICE_SIGNING_SECRETS")

    @property
    def app_webhooks(self) -> dict[str, str]:
        """appId → the URL its adapters' lifecycle events are POSTed to."""
        return parse_webhooks(self.webhooks)

    @property
    def header_keys(self) -> tuple[bytes, ...]:
        """The Fernet keys for header values at rest (first encrypts); empty: none, so
        header values cannot be kept. Development mode falls back to `DEV_SECRETS_KEY`."""
        keys = parse_secrets_keys(self.secrets_key.get_secret_value())
        if not keys and self.dev:
            return (DEV_SECRETS_KEY,)
        return keys

    @property
    def endpoint_policy(self) -> EndpointPolicy:
        return EndpointPolicy(
            allow_private=self.allow_private_endpoints or self.dev,
            allow=parse_networks(self.endpoint_allow_networks),
            deny=parse_networks(self.endpoint_deny_networks),
        )

    @property
    def ice_server_urls(self) -> list[str]:
        return parse_ice_servers(self.ice_servers)

    @property
    def ice_port_range(self) -> range | None:
        """The ports ICE host candidates bind to; None: the OS's ephemeral ports."""
        return parse_port_range(self.ice_udp_ports)


@lru_cache
def get_settings() -> Settings:
    """The process's settings, built once; tests call `get_settings.cache_clear()`."""
    return Settings()
