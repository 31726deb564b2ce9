"""The one settings object. Every variable is ``SENSORNET_<NAME>`` (env or ``.env``);
CLI flags override. ``docs/settings.md`` lists them all."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Literal, Self

from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from sensornet.errors import ConfigError
from sensornet.logs import LogFormat

DEV_INGEST_PASSWORD = "ingester-dev-secret"  # noqa: S105 - refused outside local use


class Settings(BaseSettings):
    """Platform settings; defaults run everything on one machine with no set-up."""

    model_config = SettingsConfigDict(
        env_prefix="SENSORNET_", env_file=".env", extra="ignore", frozen=True
    )

    environment: Literal["local", "production"] = Field(
        "local",
        description="production refuses secrets left at their development defaults "
        "(deploy/ sets it)",
    )
    state_dir: Path = Field(Path(".state"), description="Where local services keep data/logs")

    mqtt_host: str = "127.0.0.1"
    mqtt_port: int = 1883
    mqtt_tls: bool = Field(
        False,
        description="Connect to the broker over TLS (its 8883 listener, deploy/README.md), "
        "verifying its certificate and host name: ingester, simulator, API health check",
    )
    mqtt_ca_file: Path | None = Field(
        None,
        description="CA certificates (PEM) to verify the broker's TLS certificate; "
        "default: the system's",
    )
    mqtt_cert_file: Path | None = Field(
        None, description="Client certificate (PEM) for a broker that requires one"
    )
    mqtt_key_file: Path | None = Field(
        None, description="Private key (PEM) of SENSORNET_MQTT_CERT_FILE, if not in that file"
    )
    topic_prefix: str = Field("city/v1", description="Prefix of every device topic")
    mqtt_endpoints: str = Field(
        "",
        description="Scaled shape: the broker nodes devices (the simulator) connect to, "
        "comma-separated host:port, spread round-robin; '' = SENSORNET_MQTT_HOST:PORT",
    )
    mqtt_protocol: Literal["5", "3.1.1"] = Field(
        "5", description="The simulator's MQTT version; 3.1.1 for RabbitMQ 3.10 (scaled shape)"
    )
    mqtt_ingest_user: str = "ingester"
    mqtt_ingest_password: SecretStr = SecretStr(DEV_INGEST_PASSWORD)
    mqtt_fleet_user: str = Field(
        "simulator", description="Test-only: the simulator's shared login (docs/simulator.md)"
    )
    mqtt_fleet_password: SecretStr | None = Field(
        None,
        description="Test-only: unset, the fleet identity (which may publish as any device) "
        "does not exist; set, it exists only while a simulator using it runs",
    )
    broker_auth_dir: Path | None = Field(
        None,
        description="The broker's credential store (passwd, acl) that the API and CLI write; "
        "default: the local broker's, <state_dir>/mosquitto",
    )
    broker_reload: Literal["signal", "watch"] = Field(
        "signal",
        description="signal: SIGHUP the broker whose pid is in the store (local services); "
        "watch: the broker's host reloads when the files change (deploy/README.md)",
    )
    broker_confirm_timeout_s: float = Field(
        30.0, description="A credential change the broker has not taken by then is an error"
    )
    broker_logins: Literal["file", "registry"] = Field(
        "file",
        description="file: the platform delivers credentials to Mosquitto's password file; "
        "registry: the broker asks the platform at each connection (the scaled shape's "
        "RabbitMQ, sensornet broker auth-serve): a change needs no delivery",
    )
    broker_coalesce_s: float = Field(
        0.05,
        description="Mosquitto: credential changes of the API within this window share one "
        "broker reload (and those arriving during a reload share the next)",
    )
    mqtt_max_queued_messages: int = Field(
        2_000_000, description="Per-session broker queue: 1 h of 10k sensors at 1/min is 600k"
    )

    influx_url: str = "http://127.0.0.1:8086"
    influx_rpc_port: int = 8088
    influx_db: str = "sensornet"
    influx_user: str | None = Field(
        None,
        description="InfluxDB user of the part that runs: in deployments the ingester's "
        "(write), the alarm runner's or the storage layout's (admin); deploy/README.md",
    )
    influx_password: SecretStr | None = None
    influx_read_user: str | None = Field(
        None,
        description="Read-only InfluxDB user of the API and of Grafana's data source; "
        "unset: SENSORNET_INFLUX_USER",
    )
    influx_read_password: SecretStr | None = Field(
        None, description="Password of SENSORNET_INFLUX_READ_USER"
    )
    influx_timeout_s: float = 10.0
    influx_ca_file: Path | None = Field(
        None,
        description="CA certificates (PEM) to verify an https InfluxDB; default: the system's",
    )
    influx_raw_retention: str = Field("30d", description="How long raw readings are kept")
    influx_1m_retention: str = Field("400d", description="How long 1-minute aggregates are kept")
    influx_1h_retention: str = Field("INF", description="How long 1-hour aggregates are kept")
    influx_1h_refresh: str = Field(
        "5m",
        description="How often the hourly aggregates are computed again, the current hour "
        "included (its aggregate is at most this old); InfluxQL duration",
    )

    log_format: LogFormat = Field(
        "text", description="Logs as plain text, or one JSON object a line (json)"
    )
    api_host: str = "127.0.0.1"
    api_port: int = 8000
    api_key_cache_s: float = Field(
        2.0,
        description="How long the API remembers a valid key (a revocation elsewhere "
        "than through this API takes effect after this); 0 = look it up every request",
    )
    api_key_refused_cache_s: float = Field(
        30.0,
        ge=0,
        description="How long the API remembers an unknown, revoked or expired key, so "
        "repeating it costs no registry lookup (a key restored from a backup is accepted "
        "after this); 0 = look it up every request",
    )
    api_key_last_used_s: float = Field(
        60.0,
        gt=0,
        description="How often the API writes each key's last use to the registry (one "
        "UPDATE per used key per period; last_used_at lags by at most this)",
    )

    ingest_inputs: Annotated[list[str], NoDecode] = Field(
        ["mqtt"],
        description="The ingester's ways in, comma-separated (ingest/inputs/: mqtt, http, "
        "amqp, sensor_community); docs/decisions.md, Inputs",
    )
    ingest_http_host: str = Field("127.0.0.1", description="HTTP input: listen address")
    ingest_http_port: int = Field(
        8090, description="HTTP input: listen port (0 = any free port, logged)"
    )
    ingest_http_max_body_bytes: int = Field(
        1024 * 1024,
        description="HTTP input: larger request bodies are refused with 413 (each message is "
        "still held to SENSORNET_INGEST_MAX_PAYLOAD_BYTES)",
    )
    ingest_http_wait_s: float = Field(
        30.0,
        description="HTTP input: a request whose readings are not durable by then is answered "
        "503 (retry: it is idempotent)",
    )
    ingest_http_max_waiting: int = Field(
        10_000,
        description="HTTP input: requests waiting to be durable at once; past it 429",
    )
    ingest_http_integrations: dict[str, SecretStr] = Field(
        default_factory=dict,
        description='HTTP input: integration credentials, JSON {"<name>": "<token>"}; an '
        "integration may push for any registered device (docs/payloads.md, HTTP input)",
    )
    sc_pull_url: str = Field(
        "https://data.sensor.community",
        description="Sensor.Community data API (the sensor_community input pulls "
        "<url>/airrohr/v1/filter/area=...); docs/inputs/sensor-community.md",
    )
    sc_pull_area: str = Field(
        "",
        description="The pull's area filter 'lat,lon,km'; empty: the circle around the "
        "district's bounding box (records outside the box are dropped either way)",
    )
    sc_pull_interval_s: float = Field(
        60.0, gt=0, description="How often the sensor_community input pulls (the API "
        "answers the last 5 minutes, refreshed every minute)"
    )  # fmt: skip
    sc_pull_timeout_s: float = Field(20.0, gt=0, description="Timeout of one pull")
    ingest_client_id: str = Field(
        "ingester-1",
        description="Fixed MQTT client id (session); in the scaled shape the ingester's "
        "name, its AMQP consumer tag",
    )
    ingest_share_group: str = Field(
        "", description="MQTT 5 shared-subscription group for several ingesters ('' = one)"
    )
    ingest_session_expiry_s: int = 7 * 24 * 3600
    ingest_batch_size: int = Field(
        10_000,
        description="Messages per batch (at most receive-maximum / (writes in flight + 1)); "
        "10,000 drained single readings ~5% faster than 5,000 (docs/benchmarks.md)",
    )
    ingest_batch_bytes: int = Field(
        1024 * 1024,
        description="A batch is also cut at this many payload bytes; the socket pauses at "
        "twice this pending",
    )
    ingest_batch_interval_s: float = 0.25
    ingest_receive_maximum: int = Field(
        40_000,
        description="Unacked messages the broker may send us (MQTT 5 receive-maximum); it sets "
        "the batch cap. Memory is bounded by pausing the socket at twice ingest_batch_bytes "
        "pending: Mosquitto 2.0.11 stops honouring receive-maximum once acks flow",
    )

    ingest_writes_in_flight: int = Field(
        3,
        description="Batches being written at once; the next is processed meanwhile "
        "(3 drained packs ~9% faster than 2 in docs/benchmarks.md)",
    )
    ingest_max_payload_bytes: int = Field(256 * 1024, description="Larger payloads are refused")
    ingest_report_interval_s: float = Field(
        10.0, description="How often platform figures are written to InfluxDB"
    )
    ingest_metrics_port: int = Field(
        9464, description="The ingester's Prometheus /metrics port; 0 turns it off"
    )
    amqp_urls: str = Field(
        "",
        description="Scaled shape: the cluster's AMQP nodes, comma-separated "
        "(amqp://host:port/); user and password are SENSORNET_MQTT_INGEST_USER/PASSWORD",
    )
    amqp_queue: str = Field("readings", description="Scaled shape: the readings quorum queue")
    broker_auth_host: str = Field(
        "127.0.0.1", description="Scaled shape: where the platform answers RabbitMQ's logins"
    )
    broker_auth_port: int = Field(
        8010, description="Scaled shape: port of the broker login endpoint (auth-serve)"
    )
    rabbitmq_management_urls: str = Field(
        "",
        description="Scaled shape: the broker nodes' management APIs, comma-separated "
        "(http://user:password@host:port), shown by /platform/health",
    )
    spool_max_bytes: int = Field(
        2 * 1024**3, description="Disk spool bound; past it the ingester stops acknowledging"
    )
    alarm_interval_s: float = Field(15.0, description="How often alarm rules are evaluated")

    # The operations view's map (issue 22; docs/dashboards.md, docs/operations.md)
    map_tiles_url: str = Field(
        "",
        description="XYZ tile URL template of the map's basemap, e.g. a self-hosted tile "
        "server http://tiles.internal/{z}/{x}/{y}.png; '' = Grafana's default basemap "
        "(from the internet unless grafana.ini sets [geomap] default_baselayer_config)",
    )
    map_tiles_attribution: str = Field("", description="Attribution shown on the basemap")
    map_crs: Literal["wgs84", "gcj02"] = Field(
        "wgs84",
        description="Coordinate system of the basemap's tiles: gcj02 for Chinese tile "
        "services (Gaode/AutoNavi, Tencent); the alarm runner writes map positions in it",
    )

    # Notifications and platform health (issue 20; docs/alerting.md)
    alertmanager_url: str = Field(
        "http://127.0.0.1:9093",
        description="Alertmanager the alarm runner sends alarms and silences to; '' = none "
        "(alarms are still recorded)",
    )
    alert_routing_file: Path | None = Field(
        None,
        description="Who gets which alarms (docs/alerting.md); default: the shipped "
        "sensornet/data/routing.yaml",
    )
    alert_resend_s: float = Field(
        60.0,
        gt=0,
        description="Firing alarms are sent to Alertmanager again this often (it forgets an "
        "alert not resent within 4x this)",
    )
    alert_link_base: str = Field(
        "",
        description="Base URL of the link back to a sensor in notifications (its view is "
        "<base>/sensors/<id>/view); default: the API's own address",
    )
    alert_secrets: SecretStr = Field(
        SecretStr(""),
        description='JSON object of receivers\' secrets, e.g. {"duty-dingtalk.url": "...", '
        '"duty-dingtalk.secret": "SEC...", "smtp.password": "..."}; never written into '
        "generated configuration except as 0600 files (docs/alerting.md)",
    )
    alert_smtp_smarthost: str = Field(
        "localhost:25", description="SMTP server (host:port) for e-mail receivers"
    )
    alert_smtp_from: str = Field("sensornet@localhost", description="Sender of alarm e-mail")
    alert_smtp_user: str = Field("", description="SMTP login ('' = none); password: secret "
                                 "smtp.password")  # fmt: skip
    alert_smtp_require_tls: bool = Field(True, description="Require STARTTLS to the SMTP server")
    alert_relay_host: str = Field("127.0.0.1", description="The WeCom/DingTalk relay listens here")
    alert_relay_port: int = Field(
        9097, description="Port of the relay Alertmanager posts robot notifications to"
    )
    alert_relay_url: str = Field(
        "",
        description="How Alertmanager reaches the relay (containers: http://alarms:9097); "
        "default: http://<relay host>:<relay port>",
    )
    metrics_host: str = Field(
        "127.0.0.1",
        description="Address the ingester's and alarm runner's /metrics listen on "
        "(containers: 0.0.0.0)",
    )
    alertmanager_cluster_port: int = Field(
        0, description="Alertmanager's gossip port (0: no cluster, one Alertmanager)"
    )
    prometheus_port: int = Field(9090, description="The project's Prometheus listens here")
    alarm_metrics_port: int = Field(
        9465, description="The alarm runner's Prometheus /metrics port; 0 turns it off"
    )

    accounting_max_rows: int = Field(
        100_000,
        description="Per-device accounting reads at most this many rows of readings (and "
        "as many dead letters) per request; past it the answer covers less and says so",
    )

    northbound_secret_key: SecretStr | None = Field(
        None,
        description="Fernet key(s), comma-separated (the first encrypts), that encrypt "
        "northbound subscription secrets in the registry; unset locally: one is made in "
        "<state_dir>/northbound.key; required in production (docs/northbound.md)",
    )
    northbound_allow_http: bool = Field(
        False, description="Accept plain http:// subscription URLs to hosts other than loopback"
    )
    northbound_batch_size: int = Field(
        1000, ge=1, le=100_000, description="Events per northbound request at most"
    )
    northbound_poll_s: float = Field(
        0.5, gt=0, description="How often the pusher looks for new events when caught up"
    )
    northbound_settle_s: float = Field(
        30.0,
        ge=0,
        description="Readings are pushed once their timestamp is this old; the ingester "
        "notes readings stored over half of it late, which the pusher delivers from the "
        "notes (docs/northbound.md, 'Late points'): give the ingester and the pusher the "
        "same value. Status and alarms: 1 s",
    )
    northbound_late_notes: Literal["owed", "always"] = Field(
        "owed",
        description="'owed': the ingester notes late points only while a subscription could "
        "be owed them (a new subscription with a start in the past then waits about "
        "INFLUX_TIMEOUT_S + 7 s before its first read); 'always': every late point noted, "
        "no wait (docs/northbound.md, 'Late points'). Give the ingester and the pusher the "
        "same value",
    )
    northbound_lanes: int = Field(
        1,
        ge=1,
        le=8,
        description="Requests in flight per subscription, each for its own share of the "
        "sensors (a sensor's events stay in order); more than 1 for a receiver far away "
        "(throughput is a batch per round trip per lane) that takes concurrent requests",
    )
    northbound_timeout_s: float = Field(10.0, gt=0, description="Per request to a receiver")
    northbound_backoff_max_s: float = Field(
        60.0, gt=0, description="Longest wait between retries of a failing receiver"
    )
    northbound_pause_after_s: float = Field(
        3 * 3600.0,
        gt=0,
        description="A receiver failing for this long is paused with an alarm (resume "
        "through the API); longer than the hour-long outage it must ride out",
    )
    northbound_source: str = Field(
        "/sensornet", description="CloudEvents 'source' of every pushed event"
    )
    northbound_metrics_port: int = Field(
        9466, description="The northbound pusher's Prometheus /metrics port; 0 turns it off"
    )

    opendata_rate_per_s: float = Field(
        1.0, description="Open data: requests per second per client IP (token bucket refill)"
    )
    opendata_burst: int = Field(30, description="Open data: burst size per client IP")
    opendata_limit_file: Path | None = Field(
        None,
        description="Open data: the rate-limit state every API worker of this host shares "
        "(SQLite, WAL); default: opendata-limits.db in the state directory "
        "(docs/decisions.md, Open-data rate limit)",
    )
    api_trusted_proxies: Annotated[list[str], NoDecode] = Field(
        [],
        description="Addresses or networks of reverse proxies whose X-Forwarded-For the API "
        "believes, comma-separated (e.g. 127.0.0.1 for nginx on the host); default none: "
        "the client is the connection's peer",
    )

    device_health_interval_s: float = Field(
        0.0,
        ge=0,
        description="At most one device_health point (radio metadata, battery) per device in "
        "this time; 0 (the default) keeps every one. A bound for bursts and replayed "
        "backlogs: it drops the health of uplinks in between, never a reading",
    )
    lorawan_network: Literal["chirpstack", "tts"] = Field(
        "chirpstack",
        description="LoRaWAN input: whose MQTT integration it reads, ChirpStack v4 or The Things "
        "Stack v3 (docs/inputs/lorawan.md)",
    )
    lorawan_mqtt_host: str = Field("127.0.0.1", description="LoRaWAN input: the NS's broker")
    lorawan_mqtt_port: int = Field(1883, description="LoRaWAN input: the NS's broker port")
    lorawan_mqtt_user: str = Field("", description="LoRaWAN input: user at the NS's broker")
    lorawan_mqtt_password: SecretStr = Field(
        SecretStr(""), description="LoRaWAN input: password at the NS's broker (TTS: an API key)"
    )
    lorawan_mqtt_client_id: str = Field(
        "sensornet-lorawan-1", description="LoRaWAN input: fixed MQTT client id (its session)"
    )
    lorawan_mqtt_topics: str = Field(
        "",
        description="LoRaWAN input: topic filters, comma-separated; empty: the network's "
        "uplink topics (application/+/device/+/event/up and .../status; v3/+/devices/+/up)",
    )
    lorawan_mqtt_tls: bool = Field(False, description="LoRaWAN input: TLS to the NS's broker")
    lorawan_mqtt_ca_file: Path | None = Field(
        None, description="LoRaWAN input: CA bundle for the NS's broker (default: the system's)"
    )

    registry_url: str = Field(
        "", description="SQLAlchemy URL; empty means SQLite in the state directory"
    )

    @field_validator("ingest_inputs", "api_trusted_proxies", mode="before")
    @classmethod
    def _comma_separated(cls, value: object) -> object:
        """``SENSORNET_INGEST_INPUTS=mqtt,http`` as well as a JSON list."""
        if isinstance(value, str):
            if value.lstrip().startswith("["):
                return json.loads(value)
            return [part.strip() for part in value.split(",") if part.strip()]
        return value

    @field_validator("api_trusted_proxies")
    @classmethod
    def _addresses(cls, value: list[str]) -> list[str]:
        from sensornet.client_address import trusted_networks

        trusted_networks(value)  # a bad entry is a clear error at start, not a silent miss
        return value

    @field_validator("map_tiles_url")
    @classmethod
    def _xyz_template(cls, value: str) -> str:
        """Empty, or an http(s) XYZ template: a URL without {z}/{x}/{y} would fetch one
        tile for every square of the map."""
        if value and (
            not value.startswith(("http://", "https://"))
            or not all(p in value for p in ("{z}", "{x}", "{y}"))
        ):
            raise ValueError(
                "must be an http(s) XYZ tile template with {z}, {x} and {y}, "
                "e.g. http://tiles.internal/{z}/{x}/{y}.png"
            )
        return value

    @field_validator("mqtt_fleet_password", mode="before")
    @classmethod
    def _empty_is_unset(cls, value: object) -> object:
        """compose passes ``${MQTT_FLEET_PASSWORD:-}``: empty means no fleet identity."""
        return None if value == "" else value

    @model_validator(mode="after")
    def _no_default_secrets_in_production(self) -> Self:
        if self.environment == "production" and self.mqtt_ingest_password.get_secret_value() in (
            DEV_INGEST_PASSWORD,
            "",
        ):
            raise ValueError(
                "SENSORNET_MQTT_INGEST_PASSWORD is empty or the development default; set a "
                "secret of your own (SENSORNET_ENVIRONMENT=production refuses defaults)"
            )
        return self

    def mqtt_endpoint_list(self) -> list[tuple[str, int]]:
        """``mqtt_endpoints`` as (host, port) pairs; the one broker when empty."""
        out = []
        for item in filter(None, (e.strip() for e in self.mqtt_endpoints.split(","))):
            host, _, port = item.rpartition(":")
            if not host or not port.isdigit():
                raise ConfigError(f"SENSORNET_MQTT_ENDPOINTS: {item!r} is not host:port")
            out.append((host, int(port)))
        return out or [(self.mqtt_host, self.mqtt_port)]

    def amqp_node_urls(self) -> list[str]:
        """``amqp_urls`` with the ingester's credentials in each."""
        from urllib.parse import quote, urlsplit, urlunsplit

        out = []
        for url in filter(None, (u.strip() for u in self.amqp_urls.split(","))):
            parts = urlsplit(url)
            user = quote(self.mqtt_ingest_user, safe="")
            password = quote(self.mqtt_ingest_password.get_secret_value(), safe="")
            netloc = f"{user}:{password}@{parts.hostname}:{parts.port or 5672}"
            out.append(urlunsplit((parts.scheme, netloc, parts.path or "/", "", "")))
        return out

    def fleet_password(self) -> str:
        """The fleet identity's password (test-only); an error naming the setting if unset."""
        if self.mqtt_fleet_password is None:
            raise ConfigError(
                "the simulator's fleet identity is off (test-only): set "
                "SENSORNET_MQTT_FLEET_PASSWORD, or give devices their own credentials"
            )
        return self.mqtt_fleet_password.get_secret_value()

    @model_validator(mode="after")
    def _tls_files_need_tls(self) -> Settings:
        """A CA or client certificate without TLS would silently connect in plain text."""
        given = [
            f"SENSORNET_{name.upper()}"
            for name in ("mqtt_ca_file", "mqtt_cert_file", "mqtt_key_file")
            if getattr(self, name) is not None
        ]
        if given and not self.mqtt_tls:
            raise ValueError(
                f"{', '.join(given)} set but SENSORNET_MQTT_TLS is off: set "
                f"SENSORNET_MQTT_TLS=true (and the broker's TLS port) or unset them"
            )
        if self.mqtt_key_file is not None and self.mqtt_cert_file is None:
            raise ValueError("SENSORNET_MQTT_KEY_FILE set without SENSORNET_MQTT_CERT_FILE")
        return self

    @property
    def influx_reader(self) -> tuple[str | None, SecretStr | None]:
        """User and password the read-only parts (API, Grafana) give InfluxDB."""
        if self.influx_read_user is not None:
            return self.influx_read_user, self.influx_read_password
        return self.influx_user, self.influx_password

    @property
    def registry_database_url(self) -> str:
        return self.registry_url or f"sqlite+aiosqlite:///{self.state_dir / 'registry.db'}"

    @property
    def alertmanager_port(self) -> int:
        """The local Alertmanager's port (9093 when the runner sends to none)."""
        if not self.alertmanager_url:
            return 9093
        return int(self.alertmanager_url.rsplit(":", 1)[1].split("/")[0])

    def alert_secret(self, name: str) -> str:
        """A receiver's secret by name; an error naming the setting if it is missing."""
        secrets = self.alert_secret_names()
        if name not in secrets:
            raise ConfigError(
                f"secret {name!r} is missing: add it to SENSORNET_ALERT_SECRETS (a JSON object)"
            )
        return secrets[name]

    def alert_secret_names(self) -> dict[str, str]:
        """The receivers' secrets by name: SENSORNET_ALERT_SECRETS, empty (compose passes
        ``${ALERT_SECRETS:-}``) or a JSON object of strings. Checked here, not when the
        settings load, so that the error never repeats the value."""
        text = self.alert_secrets.get_secret_value().strip()
        if not text:
            return {}
        try:
            found = json.loads(text)
        except ValueError:
            found = None
        if not isinstance(found, dict) or not all(
            isinstance(k, str) and isinstance(v, str) for k, v in found.items()
        ):
            raise ConfigError(
                'SENSORNET_ALERT_SECRETS must be a JSON object of strings: {"name": "..."}'
            )
        return found

    @property
    def influx_port(self) -> int:
        return int(self.influx_url.rsplit(":", 1)[1].split("/")[0])
