"""Provisioning N device credentials in a real Mosquitto, two ways; prints one JSON line.

  passwd:  registry-derived password file (PBKDF2 hashes made in Python) + SIGHUP
  dynsec:  the dynamic-security plugin over $CONTROL/dynamic-security/v1, one command
           per message (as a registry would send per registration) and in batches

For each: time to provision N, and the latency of adding device N+1 to a broker that
already has N, until that device can actually connect.

    .venv/bin/python -m bench.broker_auth --devices 10000
"""

from __future__ import annotations

import argparse
import asyncio
import getpass
import json
import socket
import struct
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

import gmqtt

from sensornet.broker_auth import mosquitto_hash, write_devices
from wiring.services import LocalService, Mosquitto, broker_acl, find_binary, free_port

DYNSEC = "/usr/lib/x86_64-linux-gnu/mosquitto_dynamic_security.so"
PREFIX = "city/v1"


def _utf8(s: str) -> bytes:
    b = s.encode()
    return struct.pack("!H", len(b)) + b


def connack_code(port: int, username: str, password: str) -> int:
    """MQTT 3.1.1 CONNECT with credentials; returns the CONNACK code (0 = accepted)."""
    body = _utf8("MQTT") + bytes([4, 0xC2]) + struct.pack("!H", 30)
    body += _utf8(f"probe-{username}") + _utf8(username) + _utf8(password)
    packet = bytes([0x10]) + _varint(len(body)) + body
    with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
        s.sendall(packet)
        reply = s.recv(4)
    return reply[3] if len(reply) == 4 else -1


def _varint(n: int) -> bytes:
    out = bytearray()
    while True:
        n, digit = divmod(n, 128)
        out.append(digit | (0x80 if n else 0))
        if not n:
            return bytes(out)


def wait_connect(port: int, user: str, password: str, timeout_s: float = 60) -> float:
    start = time.perf_counter()
    while connack_code(port, user, password) != 0:
        if time.perf_counter() - start > timeout_s:
            raise TimeoutError(user)
        time.sleep(0.002)
    return time.perf_counter() - start


def bench_passwd(n: int, home: Path) -> dict[str, float]:
    broker = Mosquitto(
        name="mosquitto",
        home=home,
        port=free_port(),
        users={"ingester": "x"},
        acl=broker_acl(PREFIX, "ingester", "sim"),
    )
    broker.start()
    try:
        t0 = time.perf_counter()
        entries = {f"D{i:06d}": mosquitto_hash(f"pw{i}") for i in range(n)}
        t_hash = time.perf_counter() - t0
        write_devices(home, entries)
        wait_connect(broker.port, f"D{n - 1:06d}", f"pw{n - 1}")
        t_all = time.perf_counter() - t0
        t1 = time.perf_counter()
        entries["NEW"] = mosquitto_hash("pwnew")
        write_devices(home, entries)
        wait_connect(broker.port, "NEW", "pwnew")
        t_one = time.perf_counter() - t1
        assert connack_code(broker.port, "D000000", "wrong") != 0
    finally:
        broker.stop()
    return {
        "provision_s": round(t_all, 3),
        "hash_s": round(t_hash, 3),
        "add_one_at_n_ms": round(t_one * 1000, 1),
    }


class DynsecBroker(LocalService):
    def argv(self) -> list[str]:
        return [find_binary("mosquitto") or "mosquitto", "-c", str(self.home / "m.conf")]

    def configure(self) -> None:
        cfg = self.home / "dynsec.json"
        if not cfg.exists():
            subprocess.run(
                ["mosquitto_ctrl", "dynsec", "init", str(cfg), "admin", "adminpw"],
                check=True,
                capture_output=True,
            )
        (self.home / "m.conf").write_text(
            f"per_listener_settings false\nuser {getpass.getuser()}\n"
            f"listener {self.port} 127.0.0.1\n"
            f"allow_anonymous false\nplugin {DYNSEC}\nplugin_opt_config_file {cfg}\n"
            "persistence false\nlog_dest stderr\nlog_type error\n"
        )


async def bench_dynsec(n: int, home: Path, single: int, batch: int) -> dict[str, float]:
    broker = DynsecBroker(name="dynsec", home=home, port=free_port())
    broker.start()
    replies: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
    client = gmqtt.Client("bench-admin")

    def on_message(client: Any, topic: str, payload: bytes, qos: int, props: Any) -> int:
        replies.put_nowait(json.loads(payload))
        return 0

    client.on_message = on_message
    client.set_auth_credentials("admin", "adminpw")
    try:
        await client.connect("127.0.0.1", broker.port)
        client.subscribe("$CONTROL/dynamic-security/v1/response", qos=1)

        async def send(commands: list[dict[str, object]]) -> None:
            client.publish(
                "$CONTROL/dynamic-security/v1", json.dumps({"commands": commands}), qos=1
            )
            got = await asyncio.wait_for(replies.get(), 120)
            errors = [r for r in got["responses"] if r.get("error")]
            assert not errors, errors[:3]

        await asyncio.sleep(0.2)
        acls = [
            {"acltype": "publishClientSend", "topic": f"{PREFIX}/%u/{k}", "allow": True}
            for k in ("readings", "status", "pack")
        ]
        await send([{"command": "createRole", "rolename": "device", "acls": acls}])

        def create(i: int | str) -> dict[str, object]:
            return {
                "command": "createClient",
                "username": f"D{i}",
                "password": f"pw{i}",
                "roles": [{"rolename": "device"}],
            }

        t0 = time.perf_counter()
        for i in range(single):
            await send([create(i)])
        t_single = time.perf_counter() - t0
        t1 = time.perf_counter()
        for start in range(single, n, batch):
            await send([create(i) for i in range(start, min(n, start + batch))])
        t_batched = time.perf_counter() - t1
        wait_connect(broker.port, f"D{n - 1}", f"pw{n - 1}")
        t2 = time.perf_counter()
        await send([create("NEW")])
        wait_connect(broker.port, "DNEW", "pwNEW")
        t_one = time.perf_counter() - t2
        await client.disconnect()
    finally:
        broker.stop()
    return {
        "single_per_message_devices": single,
        "single_per_message_s": round(t_single, 3),
        "single_per_device_ms": round(t_single / max(1, single) * 1000, 2),
        "batched_devices": n - single,
        "batch_size": batch,
        "batched_s": round(t_batched, 3),
        "add_one_at_n_ms": round(t_one * 1000, 1),
        "config_bytes": (home / "dynsec.json").stat().st_size,
    }


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--devices", type=int, default=10_000)
    ap.add_argument("--single", type=int, default=1000, help="dynsec devices sent one by one")
    ap.add_argument("--batch", type=int, default=500)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        passwd = bench_passwd(args.devices, Path(tmp, "passwd"))
        dynsec = asyncio.run(
            bench_dynsec(args.devices, Path(tmp, "dynsec"), args.single, args.batch)
        )
    print(json.dumps({"devices": args.devices, "passwd_file_sighup": passwd, "dynsec": dynsec}))


if __name__ == "__main__":
    main()
