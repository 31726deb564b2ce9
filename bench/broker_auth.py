"""Device registrations reaching a real Mosquitto with a fleet connected, two ways; one JSON line.

  passwd:  the product's path (``sensornet.broker_files.deliver``): the password file
           rewritten under the store's lock, SIGHUP, confirmed by a canary login; hashes
           with ``DEVICE_ITERATIONS`` (and, sampled, with mosquitto_passwd's 101)
  dynsec:  the dynamic-security plugin over ``$CONTROL/dynamic-security/v1``; Mosquitto
           2.0.11's plugin does not substitute ``%u`` in ACLs (checked), so each device gets
           its own role with its three topics: createRole + createClient per device

Every phase starts from a fresh broker that already knows ``--connected`` devices, all of
them connected (raw MQTT connections, keepalive 0), then registers ``--register`` new
devices one by one (each until it can actually connect) or in bulk (until the last one
can). A phase stops at ``--budget-s`` and reports how far it got and its rate then, so a
mechanism that would need an hour is reported, not waited for. Broker CPU is read from
/proc. The machine is shared: compare the mechanisms within one run, not across runs.

    sensornet bench broker-auth --connected 10000 --register 10000
"""

from __future__ import annotations

import asyncio
import getpass
import json
import os
import subprocess
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import gmqtt

from bench.procfs import process_cpu_s
from sensornet.broker_coalesce import coalesced
from sensornet.broker_coalesce import stats as coalesce_stats
from sensornet.broker_files import (
    DEVICE_ITERATIONS,
    BrokerTarget,
    connack,
    deliver,
    locked,
    mosquitto_hash,
)
from sensornet.mqtt_wire import connect_packet
from wiring.services import LocalService, Mosquitto, broker_acl, find_binary, free_port

DYNSEC = "/usr/lib/x86_64-linux-gnu/mosquitto_dynamic_security.so"
PREFIX = "city/v1"
KINDS = ("readings", "status", "pack")


def connack_code(port: int, username: str, password: str) -> int:
    """Connect once; the CONNACK code (0 = accepted)."""
    return connack("127.0.0.1", port, username, password, 10.0)


def wait_connect(port: int, user: str, password: str, timeout_s: float = 120) -> float:
    start = time.perf_counter()
    while connack_code(port, user, password) != 0:
        if time.perf_counter() - start > timeout_s:
            raise TimeoutError(user)
        time.sleep(0.002)
    return time.perf_counter() - start


def password(user: str) -> str:
    return f"pw-{user}-0123456789abcdef"  # the bench's; real ones are 192 random bits


Held = list[tuple[asyncio.StreamReader, asyncio.StreamWriter]]


async def hold_connections(port: int, users: list[str]) -> Held:
    """Connect every user and keep the sockets open (keepalive 0: no pings needed)."""
    writers: Held = []
    gate = asyncio.Semaphore(200)

    async def one(user: str) -> None:
        async with gate:
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            writer.write(connect_packet(f"held-{user}", user, password(user), keepalive=0))
            await writer.drain()
            ack = await reader.readexactly(4)
            if ack[3] != 0:
                raise RuntimeError(f"{user} refused: {ack[3]}")
            writers.append((reader, writer))

    await asyncio.gather(*(one(u) for u in users))
    return writers


async def still_connected(held: Held) -> int:
    await asyncio.sleep(0.2)  # lets the loop read the EOF of any connection the broker closed
    return sum(1 for reader, _ in held if not reader.at_eof())


def fleet(prefix: str, n: int) -> list[str]:
    return [f"{prefix}{i:06d}" for i in range(n)]


async def one_by_one(
    register: Callable[[str], Awaitable[None]], port: int, users: list[str], budget_s: float
) -> dict[str, Any]:
    """Register each user and wait until it can connect; stop at the budget."""
    latencies: list[float] = []
    start = time.perf_counter()
    for user in users:
        t0 = time.perf_counter()
        await register(user)
        wait_connect(port, user, password(user))
        latencies.append(time.perf_counter() - t0)
        if time.perf_counter() - start > budget_s:
            break
    total = time.perf_counter() - start
    first, last = latencies[:100], latencies[-100:]
    return {
        "registered": len(latencies),
        "of": len(users),
        "total_s": round(total, 2),
        "first_100_ms": round(sum(first) / len(first) * 1000, 1),
        "last_100_ms": round(sum(last) / len(last) * 1000, 1),
        "max_ms": round(max(latencies) * 1000, 1),
    }


# --- password file + SIGHUP (the product's code) -----------------------------------------


class PasswdBench:
    def __init__(self, home: Path, connected: int, iterations: int) -> None:
        self.iterations = iterations
        self.broker = Mosquitto(
            name="mosquitto",
            home=home,
            port=free_port(),
            users={"ingester": "ingester-bench-pw"},
            acl=broker_acl(PREFIX, "ingester"),
        )
        self.entries = {u: self.hash(u) for u in fleet("D", connected)}

    def hash(self, user: str) -> str:
        return mosquitto_hash(password(user), iterations=self.iterations)

    async def start(self) -> None:
        self.broker.start()
        self.target = BrokerTarget(self.broker.home, "signal", port=self.broker.port)
        await self.deliver()

    async def deliver(self) -> None:
        async with locked(self.target.auth_dir):
            await deliver(self.target, self.entries)

    async def register(self, user: str) -> None:
        self.entries[user] = self.hash(user)
        await self.deliver()

    async def register_bulk(self, users: list[str]) -> None:
        self.entries.update({u: self.hash(u) for u in users})
        await self.deliver()

    async def register_coalesced(self, user: str, window_s: float) -> None:
        """As the API does since registrations coalesce (sensornet.broker_coalesce)."""
        self.entries[user] = self.hash(user)

        async def run() -> int:
            await self.deliver()
            return len(self.entries)

        await coalesced(self.target.auth_dir, window_s, run)


async def coalesced_phase(
    tmp: Path, connected: int, register: int, concurrent: int, window_s: float, budget_s: float
) -> dict[str, Any]:
    """``register`` devices, ``concurrent`` registrations at a time (as many API requests
    at once), each until it can connect: reloads done and cost per registration."""
    bench = PasswdBench(tmp / f"coalesced-{concurrent}", connected, DEVICE_ITERATIONS)
    await bench.start()
    new = fleet("N", register)

    async def run() -> dict[str, Any]:
        _, reloads0 = coalesce_stats(bench.target.auth_dir)
        t0 = time.perf_counter()
        done = 0
        for i in range(0, len(new), concurrent):
            group = new[i : i + concurrent]
            await asyncio.gather(*(bench.register_coalesced(u, window_s) for u in group))
            wait_connect(bench.broker.port, group[-1], password(group[-1]))
            done += len(group)
            if time.perf_counter() - t0 > budget_s:
                break
        total = time.perf_counter() - t0
        _, reloads = coalesce_stats(bench.target.auth_dir)
        return {
            "registered": done,
            "concurrent": concurrent,
            "window_s": window_s,
            "reloads": reloads - reloads0,
            "total_s": round(total, 2),
            "per_registration_ms": round(total / done * 1000, 2),
        }

    try:
        return await measured(bench.broker.port, bench.broker.pid(), list(bench.entries), run)
    finally:
        bench.broker.stop()


async def run_coalesced(
    connected: list[int], register: int, concurrent: int, window_s: float, budget_s: float
) -> dict[str, Any]:
    """Mosquitto's cost per registration at several fleet sizes, one by one and coalesced."""
    out: dict[str, Any] = {"loadavg_start": os.getloadavg()[0], "register": register}
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        for n in connected:
            one = await passwd_phase(tmp, n, register, DEVICE_ITERATIONS, False, budget_s)
            both = await coalesced_phase(tmp, n, register, concurrent, window_s, budget_s)
            out[str(n)] = {
                "one_by_one_ms": one["last_100_ms"],
                "one_by_one_cpu_s": one["broker_cpu_s"],
                "coalesced_ms": both["per_registration_ms"],
                "coalesced_reloads": both["reloads"],
                "coalesced_cpu_s": both["broker_cpu_s"],
                "registered": [one["registered"], both["registered"]],
                "still_connected": [one["still_connected"], both["still_connected"]],
            }
    out["loadavg_end"] = os.getloadavg()[0]
    return out


# --- dynamic security plugin ---------------------------------------------------------------


class DynsecBroker(LocalService):
    def argv(self) -> list[str]:
        return [find_binary("mosquitto") or "mosquitto", "-c", str(self.home / "m.conf")]

    def configure(self) -> None:
        (self.home / "m.conf").write_text(
            f"per_listener_settings false\nuser {getpass.getuser()}\n"
            f"listener {self.port} 127.0.0.1\nset_tcp_nodelay true\n"
            f"allow_anonymous false\nplugin {DYNSEC}\n"
            f"plugin_opt_config_file {self.home / 'dynsec.json'}\n"
            "persistence false\nlog_dest stderr\nlog_type error\n"
        )


def device_role(user: str) -> dict[str, Any]:
    acls = [
        {"acltype": "publishClientSend", "topic": f"{PREFIX}/{user}/{k}", "allow": True}
        for k in KINDS
    ]
    return {"rolename": f"device-{user}", "acls": acls}


class DynsecBench:
    def __init__(self, home: Path, connected: int) -> None:
        self.home = home
        self.connected = connected
        self.broker = DynsecBroker(name="dynsec", home=home, port=free_port())
        self.replies: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        self.admin = gmqtt.Client(f"bench-admin-{os.getpid()}")

    def seed(self) -> None:
        """The plugin's own JSON with the first devices (hashes from Python): the same state
        createClient would leave, without minutes of set-up before the measurement."""
        config = self.home / "dynsec.json"
        self.home.mkdir(parents=True, exist_ok=True)
        subprocess.run(
            ["mosquitto_ctrl", "dynsec", "init", str(config), "admin", "admin-bench-pw"],
            check=True,
            capture_output=True,
        )
        data = json.loads(config.read_text())
        for user in fleet("D", self.connected):
            _, _, iterations, salt, digest = mosquitto_hash(password(user), iterations=101).split(
                "$"
            )
            role = device_role(user)
            data["roles"].append(role)
            data["clients"].append(
                {
                    "username": user,
                    "password": digest,
                    "salt": salt,
                    "iterations": int(iterations),
                    "roles": [{"rolename": role["rolename"]}],
                }
            )
        config.write_text(json.dumps(data))

    async def start(self) -> None:
        self.seed()
        self.broker.start()
        self.admin.on_message = self._on_message
        self.admin.set_auth_credentials("admin", "admin-bench-pw")
        await self.admin.connect("127.0.0.1", self.broker.port)
        self.admin.subscribe("$CONTROL/dynamic-security/v1/response", qos=1)
        await self.send([{"command": "listRoles", "count": 1}])  # subscription is live

    def _on_message(self, client: Any, topic: str, payload: bytes, qos: int, props: Any) -> int:
        self.replies.put_nowait(json.loads(payload))
        return 0

    async def send(self, commands: list[dict[str, Any]]) -> None:
        self.admin.publish("$CONTROL/dynamic-security/v1", json.dumps({"commands": commands}), 1)
        got = await asyncio.wait_for(self.replies.get(), 600)
        errors = [r for r in got["responses"] if r.get("error")]
        if errors:
            raise RuntimeError(errors[:3])

    @staticmethod
    def commands(user: str) -> list[dict[str, Any]]:
        role = device_role(user)
        return [
            {"command": "createRole", **role},
            {
                "command": "createClient",
                "username": user,
                "password": password(user),
                "roles": [{"rolename": role["rolename"]}],
            },
        ]

    async def register(self, user: str) -> None:
        await self.send(self.commands(user))

    async def register_bulk(self, users: list[str], budget_s: float) -> int:
        start, done = time.perf_counter(), 0
        for k in range(0, len(users), 100):
            chunk = users[k : k + 100]
            await self.send([c for u in chunk for c in self.commands(u)])
            done += len(chunk)
            if time.perf_counter() - start > budget_s:
                break
        return done

    async def stop(self) -> None:
        await self.admin.disconnect()
        self.broker.stop()


# --- phases ----------------------------------------------------------------------------------


async def measured(
    port: int, pid: int | None, connected: list[str], run: Callable[[], Awaitable[dict[str, Any]]]
) -> dict[str, Any]:
    """``run`` with ``connected`` devices holding connections to the broker: what it reports,
    the broker's CPU meanwhile, and how many of those devices are still connected after."""
    assert pid is not None
    writers = await hold_connections(port, connected)
    cpu0 = process_cpu_s(pid) or 0.0
    try:
        out = await run()
        out["broker_cpu_s"] = round((process_cpu_s(pid) or 0.0) - cpu0, 2)
        out["still_connected"] = await still_connected(writers)
    finally:
        for _, w in writers:
            w.close()
    return out


async def passwd_phase(
    tmp: Path, connected: int, register: int, iterations: int, bulk: bool, budget_s: float
) -> dict[str, Any]:
    bench = PasswdBench(tmp / f"passwd-{iterations}-{bulk}", connected, iterations)
    await bench.start()
    new = fleet("N", register)

    async def run() -> dict[str, Any]:
        if not bulk:
            return await one_by_one(bench.register, bench.broker.port, new, budget_s)
        t0 = time.perf_counter()
        await bench.register_bulk(new)
        wait_connect(bench.broker.port, new[-1], password(new[-1]))
        return {"registered": register, "total_s": round(time.perf_counter() - t0, 2)}

    try:
        return await measured(bench.broker.port, bench.broker.pid(), list(bench.entries), run)
    finally:
        bench.broker.stop()


async def dynsec_phase(
    tmp: Path, connected: int, register: int, bulk: bool, budget_s: float
) -> dict[str, Any]:
    bench = DynsecBench(tmp / f"dynsec-{bulk}", connected)
    await bench.start()
    new = fleet("N", register)

    async def run() -> dict[str, Any]:
        if not bulk:
            return await one_by_one(bench.register, bench.broker.port, new, budget_s)
        t0 = time.perf_counter()
        done = await bench.register_bulk(new, budget_s)
        wait_connect(bench.broker.port, new[done - 1], password(new[done - 1]))
        return {
            "registered": done,
            "of": register,
            "total_s": round(time.perf_counter() - t0, 2),
            "per_message": 100,
        }

    try:
        out = await measured(bench.broker.port, bench.broker.pid(), fleet("D", connected), run)
        out["config_bytes"] = (bench.home / "dynsec.json").stat().st_size
        return out
    finally:
        await bench.stop()


async def run_bench(
    connected: int, register: int, sample_101: int, budget_s: float
) -> dict[str, Any]:
    result: dict[str, Any] = {
        "connected": connected,
        "register": register,
        "budget_s": budget_s,
        "loadavg_start": os.getloadavg()[0],
    }
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        n, c, b = register, connected, budget_s
        result["passwd_one_by_one"] = await passwd_phase(tmp, c, n, DEVICE_ITERATIONS, False, b)
        result["passwd_bulk"] = await passwd_phase(tmp, c, n, DEVICE_ITERATIONS, True, b)
        result["passwd_101_iterations_one_by_one"] = await passwd_phase(
            tmp, c, sample_101, 101, False, b
        )
        result["dynsec_one_by_one"] = await dynsec_phase(tmp, c, n, False, b)
        result["dynsec_bulk"] = await dynsec_phase(tmp, c, n, True, b)
    result["device_iterations"] = DEVICE_ITERATIONS
    result["loadavg_end"] = os.getloadavg()[0]
    return result
