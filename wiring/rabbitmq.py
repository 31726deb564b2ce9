"""A RabbitMQ 3.10 cluster as local processes: the scaled shape's broker (issue 21).

Each node is a ``rabbitmq-server`` of the Debian package with its own name, ports, data
(``RABBITMQ_MNESIA_BASE``), logs, config and plugin file under ``<state>/rabbitmq/nodeN``;
the nodes share one Erlang cookie through ``HOME`` (``<state>/rabbitmq/.erlang.cookie``).
They form the cluster at boot by classic peer discovery (every node lists all of them)
rather than by ``rabbitmqctl join_cluster``: the CLI costs an Erlang VM start per call
(8-20 s on this shared machine), discovery none. The first node boots alone and the
others join it, so two nodes never form separate clusters.

On top of the cluster: the MQTT plugin on every node (plain and, given a certificate, TLS
listeners), the management API (queue leader, node health, declarations), the readings
quorum queue bound to ``amq.topic`` with the readings' routing keys (declared once every
node has joined, so it has a member on each), and the ingester's AMQP user, which may only
consume from that queue. Devices log in through the platform's HTTP auth endpoint
(``api/broker_auth_app.py``) when one is given.

The layout (ports, password, cookie) is written to ``cluster.json`` on the first start, so
``services down``/``status`` and the other commands find the same cluster again.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import signal
import urllib.parse
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import httpx

from sensornet.errors import ServiceError
from sensornet.settings import Settings
from sensornet.topics import ingest_routing_keys
from wiring.services import LocalService, _port_open, find_binary, free_port

RABBITMQ_SERVER = "/usr/lib/rabbitmq/bin/rabbitmq-server"  # the Debian package's, no su wrapper
ADMIN_USER = "sensornet-admin"
READINGS_QUEUE = "readings"
PLUGINS = ("rabbitmq_management", "rabbitmq_mqtt", "rabbitmq_auth_backend_http")


@dataclass
class NodePorts:
    amqp: int
    mqtt: int
    mqtts: int
    dist: int
    http: int  # management API


@dataclass
class ClusterLayout:
    """What identifies one local cluster: written once, read by every later command."""

    name: str
    nodes: list[NodePorts]
    admin_password: str
    cookie: str

    @classmethod
    def new(cls, size: int) -> ClusterLayout:
        taken: set[int] = set()

        def distinct() -> int:  # free_port may hand out a port twice in a row
            while (port := free_port()) in taken:
                pass
            taken.add(port)
            return port

        ports = [NodePorts(*(distinct() for _ in range(5))) for _ in range(size)]
        return cls(
            name=f"sn{secrets.token_hex(3)}",
            nodes=ports,
            admin_password=secrets.token_urlsafe(18),
            cookie=secrets.token_hex(20).upper(),
        )

    @classmethod
    def load_or_new(cls, file: Path, size: int) -> ClusterLayout:
        if file.exists():
            raw = json.loads(file.read_text())
            layout = cls(
                name=raw["name"],
                nodes=[NodePorts(**n) for n in raw["nodes"]],
                admin_password=raw["admin_password"],
                cookie=raw["cookie"],
            )
            if len(layout.nodes) != size:
                raise ServiceError(
                    f"{file} describes a {len(layout.nodes)}-node cluster, not {size}: "
                    f"stop it and remove {file.parent} to make a new one"
                )
            return layout
        layout = cls.new(size)
        file.parent.mkdir(parents=True, exist_ok=True)
        file.write_text(json.dumps(asdict(layout)))
        file.chmod(0o600)
        return layout


@dataclass
class RabbitNode(LocalService):
    """One cluster member. Its pid file holds the start script's pid (SIGTERM stops the
    node cleanly through it); ``beam.pid`` the Erlang VM's, which ``kill`` hits."""

    node_name: str = ""
    ports: NodePorts = field(default_factory=lambda: NodePorts(0, 0, 0, 0, 0))
    cluster_home: Path = Path()
    peers: Sequence[str] = ()
    admin_password: str = ""
    auth_url: str | None = None
    tls: tuple[Path, Path] | None = None
    start_timeout_s: float = 180.0

    @property
    def beam_pid_file(self) -> Path:
        return self.home / "beam.pid"

    def argv(self) -> list[str]:
        return [RABBITMQ_SERVER]

    def env(self) -> dict[str, str]:
        home = self.home
        return {
            **os.environ,
            "HOME": str(self.cluster_home),  # .erlang.cookie, shared by the nodes
            "RABBITMQ_NODENAME": self.node_name,
            "RABBITMQ_NODE_IP_ADDRESS": self.host,
            "RABBITMQ_NODE_PORT": str(self.ports.amqp),
            "RABBITMQ_DIST_PORT": str(self.ports.dist),
            "RABBITMQ_MNESIA_BASE": str(home / "mnesia"),
            "RABBITMQ_LOG_BASE": str(home / "log"),
            "RABBITMQ_CONFIG_FILE": str(home / "rabbitmq.conf"),
            "RABBITMQ_ENABLED_PLUGINS_FILE": str(home / "enabled_plugins"),
            "RABBITMQ_PID_FILE": str(self.beam_pid_file),
            "RABBITMQ_ADVANCED_CONFIG_FILE": str(home / "advanced.config"),
        }

    def ready(self) -> bool:
        ports = [self.ports.amqp, self.ports.mqtt, self.ports.http]
        if self.tls:
            ports.append(self.ports.mqtts)
        return all(_port_open(self.host, p) for p in ports)

    def configure(self) -> None:
        (self.home / "enabled_plugins").write_text(f"[{','.join(PLUGINS)}].\n")
        (self.home / "advanced.config").write_text("[].\n")
        (self.home / "rabbitmq.conf").write_text(self.config_text())

    def config_text(self) -> str:
        p, host = self.ports, self.host
        lines = [
            "# written by wiring.rabbitmq; docs/decisions.md (Scaled shape) has the reasons",
            f"listeners.tcp.default = {host}:{p.amqp}",
            "loopback_users = none",
            f"default_user = {ADMIN_USER}",
            f"default_pass = {self.admin_password}",
            "default_user_tags.administrator = true",
            f"management.tcp.ip = {host}",
            f"management.tcp.port = {p.http}",
            f"mqtt.listeners.tcp.default = {host}:{p.mqtt}",
            "mqtt.allow_anonymous = false",
            "mqtt.exchange = amq.topic",
            "mqtt.vhost = /",
            "cluster_formation.peer_discovery_backend = classic_config",
            *(
                f"cluster_formation.classic_config.nodes.{i} = {n}"
                for i, n in enumerate(self.peers, 1)
            ),
            "cluster_partition_handling = pause_minority",
            "log.console = false",
            "log.file.level = warning",
            "vm_memory_high_watermark.relative = 0.2",
            "disk_free_limit.absolute = 50MB",
        ]
        if self.tls:
            lines += [
                f"mqtt.listeners.ssl.default = {host}:{p.mqtts}",
                f"ssl_options.certfile = {self.tls[0]}",
                f"ssl_options.keyfile = {self.tls[1]}",
                "ssl_options.verify = verify_none",
                "ssl_options.fail_if_no_peer_cert = false",
                "ssl_options.versions.1 = tlsv1.2",
            ]
        lines += ["auth_backends.1 = internal"]
        if self.auth_url:
            base = self.auth_url.rstrip("/")
            lines += [
                # service users (admin, ingester) are internal; devices ask the platform
                "auth_backends.2 = http",
                "auth_http.http_method = post",
                f"auth_http.user_path = {base}/user",
                f"auth_http.vhost_path = {base}/vhost",
                f"auth_http.resource_path = {base}/resource",
                f"auth_http.topic_path = {base}/topic",
            ]
        return "\n".join(lines) + "\n"

    def beam_pid(self) -> int | None:
        try:
            return int(self.beam_pid_file.read_text().strip())
        except (OSError, ValueError):
            return None

    def kill(self) -> None:
        """``kill -9`` of the Erlang VM (the node dies as on a power cut), then its script."""
        beam = self.beam_pid()
        if beam is not None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(beam, signal.SIGKILL)
        self.stop(signal.SIGKILL)
        self.beam_pid_file.unlink(missing_ok=True)

    def stop(self, sig: int = signal.SIGTERM, timeout_s: float = 60.0) -> None:
        super().stop(sig, timeout_s)
        beam = self.beam_pid()
        if beam is not None and sig != signal.SIGKILL:
            # the script was killed before the VM: do not leave the VM behind
            with contextlib.suppress(ProcessLookupError):
                os.kill(beam, signal.SIGKILL)
        self.beam_pid_file.unlink(missing_ok=True)


class RabbitCluster:
    """The nodes, the management API and the readings queue of one local cluster."""

    def __init__(
        self,
        home: Path,
        size: int = 3,
        *,
        host: str = "127.0.0.1",
        auth_url: str | None = None,
        tls: tuple[Path, Path] | None = None,
    ) -> None:
        self.home = home
        self.layout = ClusterLayout.load_or_new(home / "cluster.json", size)
        names = [f"{self.layout.name}n{i + 1}@localhost" for i in range(size)]
        self.nodes = [
            RabbitNode(
                name=f"rabbitmq{i + 1}",
                home=home / f"node{i + 1}",
                host=host,
                port=ports.amqp,
                node_name=names[i],
                ports=ports,
                cluster_home=home,
                peers=names,
                admin_password=self.layout.admin_password,
                auth_url=auth_url,
                tls=tls,
            )
            for i, ports in enumerate(self.layout.nodes)
        ]
        self.host = host

    # --- processes -------------------------------------------------------------------

    def _write_cookie(self) -> None:
        cookie = self.home / ".erlang.cookie"
        if not cookie.exists():
            cookie.write_text(self.layout.cookie)
        cookie.chmod(0o400)

    def start(self) -> None:
        """Boot the first node, then the others together (they join it), then wait for
        all of them to be members and running."""
        if find_binary("rabbitmq-server") is None and not Path(RABBITMQ_SERVER).exists():
            raise ServiceError(
                "rabbitmq-server is missing; install it with: "
                "apt-get update && apt-get install -y rabbitmq-server"
            )
        self.home.mkdir(parents=True, exist_ok=True)
        self._write_cookie()
        first, rest = self.nodes[0], self.nodes[1:]
        first.start()
        for node in rest:
            node.start_timeout_s = 0  # started now, waited for below
            with contextlib.suppress(ServiceError):
                node.start()
            node.start_timeout_s = 180.0
        for node in rest:
            node.wait_ready()
        self.wait_members()

    def stop(self) -> None:
        for node in reversed(self.nodes):
            node.stop()

    def running(self) -> bool:
        return all(n.running() for n in self.nodes)

    # --- management API --------------------------------------------------------------

    def api(self, node: RabbitNode | None = None) -> httpx.Client:
        """A management API client on ``node`` (default: the first one that answers)."""
        candidates = [node] if node else [n for n in self.nodes if n.running()]
        for n in candidates:
            if _port_open(self.host, n.ports.http):
                return httpx.Client(
                    base_url=f"http://{self.host}:{n.ports.http}/api",
                    auth=(ADMIN_USER, self.layout.admin_password),
                    timeout=30.0,
                )
        raise ServiceError(f"no node of the RabbitMQ cluster under {self.home} answers")

    def _call(self, method: str, path: str, body: Any = None) -> Any:
        with self.api() as client:
            r = client.request(method, path, json=body)
        if r.status_code >= 400:
            raise ServiceError(f"RabbitMQ management {method} {path}: {r.status_code} {r.text}")
        return r.json() if r.content else None

    def node_status(self) -> list[dict[str, Any]]:
        """Every node as the cluster sees it: name, running, and our pid and ports."""
        try:
            seen = {n["name"]: bool(n.get("running")) for n in self._call("GET", "/nodes")}
        except (ServiceError, httpx.HTTPError):
            seen = {}
        return [
            {
                "name": n.node_name,
                "pid": n.pid(),
                "amqp_port": n.ports.amqp,
                "mqtt_port": n.ports.mqtt,
                "mqtts_port": n.ports.mqtts if n.tls else None,
                "running": seen.get(n.node_name, False),
            }
            for n in self.nodes
        ]

    def wait_members(self, timeout_s: float = 120.0) -> None:
        import time

        deadline = time.monotonic() + timeout_s
        while True:
            status = self.node_status()
            if all(s["running"] for s in status):
                return
            if time.monotonic() > deadline:
                raise ServiceError(f"RabbitMQ nodes did not all join the cluster: {status}")
            time.sleep(0.5)

    def declare_readings(self, prefix: str, ingest_user: str, ingest_password: str) -> None:
        """The readings queue, its bindings and the ingester's user (``declare_readings``)."""
        declare_readings(self._call, prefix, ingest_user, ingest_password)

    def queue(self, name: str = READINGS_QUEUE) -> dict[str, Any]:
        """The queue as the management API reports it (``leader``, ``members``,
        ``messages``, ``messages_unacknowledged``, ...)."""
        result: dict[str, Any] = self._call("GET", f"/queues/%2F/{name}")
        return result

    def leader(self, name: str = READINGS_QUEUE) -> RabbitNode:
        leader = self.queue(name).get("leader")
        for node in self.nodes:
            if node.node_name == leader:
                return node
        raise ServiceError(f"queue {name} has no leader among the local nodes ({leader})")

    def amqp_urls(self, user: str, password: str) -> list[str]:
        quoted = urllib.parse.quote(password, safe="")
        return [f"amqp://{user}:{quoted}@{self.host}:{n.ports.amqp}/" for n in self.nodes]

    def mqtt_endpoints(self, tls: bool = False) -> list[tuple[str, int]]:
        return [(self.host, n.ports.mqtts if tls else n.ports.mqtt) for n in self.nodes]


def declare_readings(
    call: Callable[[str, str, Any], Any], prefix: str, ingest_user: str, ingest_password: str
) -> None:
    """Through the management API (``call(method, path, body)``): the readings quorum
    queue (a member on every node that has joined), bound to ``amq.topic`` with the
    readings' routing keys, and the ingester's user, which may read it and nothing else.
    Idempotent."""
    q = urllib.parse.quote(READINGS_QUEUE, safe="")
    call(
        "PUT",
        f"/queues/%2F/{q}",
        {"durable": True, "auto_delete": False, "arguments": {"x-queue-type": "quorum"}},
    )
    for key in ingest_routing_keys(prefix):
        call("POST", f"/bindings/%2F/e/amq.topic/q/{q}", {"routing_key": key})
    call("PUT", f"/users/{ingest_user}", {"password": ingest_password, "tags": ""})
    call(
        "PUT",
        f"/permissions/%2F/{ingest_user}",
        {"configure": "^$", "write": "^$", "read": f"^{READINGS_QUEUE}$"},
    )


def cluster_home(settings: Settings) -> Path:
    return settings.state_dir.resolve() / "rabbitmq"


def local_cluster(
    settings: Settings,
    size: int = 3,
    auth_url: str | None = None,
    tls: tuple[Path, Path] | None = None,
) -> RabbitCluster:
    """The cluster under this settings object's state directory."""
    return RabbitCluster(cluster_home(settings), size, auth_url=auth_url, tls=tls)


def start_cluster(
    settings: Settings,
    size: int = 3,
    auth_url: str | None = None,
    tls: tuple[Path, Path] | None = None,
) -> RabbitCluster:
    """Start (or find running) the cluster and declare the readings queue and user."""
    cluster = local_cluster(settings, size, auth_url, tls)
    cluster.start()
    cluster.declare_readings(
        settings.topic_prefix,
        settings.mqtt_ingest_user,
        settings.mqtt_ingest_password.get_secret_value(),
    )
    return cluster
