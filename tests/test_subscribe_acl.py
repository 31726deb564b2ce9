"""Subscriptions outside a client's read grants get a refused SUBACK (issue 23), on the
real Mosquitto the project ships (wiring.services, with deploy/mosquitto's plugin).

Mosquitto 2.0's ACL file grants every SUBSCRIBE (a device subscribing to ``#`` was told
QoS 0, then heard nothing); with the plugin the SUBACK says 0x80 (MQTT 3.1.1) or 0x87
"not authorized" (MQTT 5), while the ingester's own filters, shared or not, are granted.
The raw packets are written here so the test reads the broker's exact answer."""

from __future__ import annotations

import asyncio
import contextlib
import getpass
import struct
import subprocess
from pathlib import Path

import pytest
from conftest import FLEET_PASSWORD, INGEST_PASSWORD

from sensornet import broker_files
from sensornet.broker_auth import install_static, mosquitto_hash
from sensornet.mqtt_wire import connack_code, connect_packet, varint
from wiring.mosquitto_plugin import subscribe_acl_plugin
from wiring.services import Mosquitto, broker_acl, find_binary, free_port

PREFIX = "city/v1"
DEPLOY = Path(__file__).parent.parent / "deploy" / "mosquitto"
REFUSED_V311, NOT_AUTHORIZED_V5 = 0x80, 0x87


def _str(s: str) -> bytes:
    return struct.pack("!H", len(s.encode())) + s.encode()


def connect_v5(client_id: str, username: str, password: str) -> bytes:
    body = _str("MQTT") + bytes([5, 0xC2]) + struct.pack("!H", 60) + varint(0)
    body += _str(client_id) + _str(username) + _str(password)
    return b"\x10" + varint(len(body)) + body


def subscribe(filters: list[str], v5: bool, packet_id: int = 1) -> bytes:
    body = struct.pack("!H", packet_id) + (varint(0) if v5 else b"")
    for f in filters:
        body += _str(f) + b"\x01"  # QoS 1
    return b"\x82" + varint(len(body)) + body


async def read_packet(reader: asyncio.StreamReader) -> tuple[int, bytes]:
    head = (await reader.readexactly(1))[0]
    length, shift = 0, 0
    while True:
        byte = (await reader.readexactly(1))[0]
        length |= (byte & 0x7F) << shift
        shift += 7
        if not byte & 0x80:
            break
    return head, await reader.readexactly(length)


async def suback(port: int, user: str, password: str, filters: list[str], v5: bool) -> list[int]:
    """The SUBACK codes the broker answers ``user`` subscribing to ``filters``."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        client_id = f"t-{user}-{'5' if v5 else '4'}"
        writer.write(
            connect_v5(client_id, user, password)
            if v5
            else connect_packet(client_id, user, password)
        )
        head, body = await asyncio.wait_for(read_packet(reader), 10)
        assert head == 0x20 and body[1] == 0, (head, body)  # CONNACK, accepted
        assert v5 or connack_code(bytes([head, len(body)]) + body) == 0
        writer.write(subscribe(filters, v5))
        head, body = await asyncio.wait_for(read_packet(reader), 10)
        assert head == 0x90, head
        codes = body[2:]
        if v5:  # properties: a varint length, then that many bytes
            codes = codes[1 + codes[0] :]
        return list(codes)
    finally:
        writer.close()


@pytest.fixture
def shipped_broker(tmp_path: Path) -> Mosquitto:
    service = Mosquitto(
        name="mosquitto",
        home=tmp_path / "broker",
        port=free_port(),
        users={"ingester": INGEST_PASSWORD, "simulator": FLEET_PASSWORD, "NS-DEV": "dev-pw"},
        acl=broker_acl(PREFIX, "ingester", "simulator"),
    )
    service.start()
    return service


@pytest.mark.parametrize("v5", [False, True], ids=["mqtt311", "mqtt5"])
async def test_subscriptions_outside_the_read_grants_are_refused(
    shipped_broker: Mosquitto, v5: bool
) -> None:
    port, no = shipped_broker.port, NOT_AUTHORIZED_V5 if v5 else REFUSED_V311
    try:
        device = [
            "#",
            f"{PREFIX}/#",
            f"{PREFIX}/+/readings",
            f"{PREFIX}/NS-DEV/readings",
            "$SYS/#",
            f"$share/g/{PREFIX}/+/readings",
        ]
        assert await suback(port, "NS-DEV", "dev-pw", device, v5) == [no] * len(device)
        ingester = [
            f"{PREFIX}/+/readings",
            f"{PREFIX}/+/pack",
            f"{PREFIX}/+/status",
            f"{PREFIX}/NS-DEV/readings",  # inside its grant
            f"$share/ingest/{PREFIX}/+/readings",
            "#",
            f"{PREFIX}/#",
            f"{PREFIX}/+/+",
            "$SYS/#",
        ]
        assert await suback(port, "ingester", INGEST_PASSWORD, ingester, v5) == [1] * 5 + [no] * 4
        # the fleet identity may write as any device, and read nothing
        assert await suback(port, "simulator", FLEET_PASSWORD, [f"{PREFIX}/#"], v5) == [no]
    finally:
        shipped_broker.stop()


async def test_a_reload_takes_new_grants(shipped_broker: Mosquitto) -> None:
    """The plugin rereads the ACL at every reload, as the broker does (SIGHUP)."""
    port = shipped_broker.port
    try:
        assert await suback(port, "NS-DEV", "dev-pw", [f"{PREFIX}/NS-DEV/cmd"], False) == [0x80]
        home = shipped_broker.home
        acl = broker_files.part(home, broker_files.ACL, broker_files.STATIC)
        acl.write_text(acl.read_text() + "\nuser NS-DEV\ntopic read city/v1/NS-DEV/cmd\n")
        broker_files.assemble(home)
        broker_files.signal_reload(home)

        async def granted() -> bool:
            got = await suback(port, "NS-DEV", "dev-pw", [f"{PREFIX}/NS-DEV/cmd"], False)
            return got == [1]

        for _ in range(50):
            if await granted():
                break
            await asyncio.sleep(0.1)
        assert await granted()
    finally:
        shipped_broker.stop()


async def test_the_compose_broker_config_refuses_too(tmp_path: Path) -> None:
    """deploy/mosquitto/mosquitto.conf, with its container paths pointed here and its TLS
    listener left out, runs on the real broker and loads the plugin the image builds."""
    auth, data = tmp_path / "broker-auth", tmp_path / "data"
    data.mkdir()
    install_static(auth, {"ingester": INGEST_PASSWORD}, broker_acl(PREFIX, "ingester"))
    devices = broker_files.password_lines({"NS-DEV": mosquitto_hash("dev-pw", iterations=1)})
    broker_files.write_part(auth, broker_files.PASSWD, broker_files.DEVICES, devices)
    broker_files.assemble(auth)
    port = free_port()
    shipped = (DEPLOY / "mosquitto.conf").read_text().split("\nlistener 8883")[0]
    assert "plugin /usr/lib/sensornet_subscribe_acl.so" in shipped
    assert "sensornet_subscribe_acl.c" in (DEPLOY / "Dockerfile").read_text()
    conf = (
        shipped.replace("/broker-auth/", f"{auth}/")
        .replace("/usr/lib/sensornet_subscribe_acl.so", str(subscribe_acl_plugin()))
        .replace("/mosquitto/data/", f"{data}/")
        .replace("listener 1883 0.0.0.0", f"listener {port} 127.0.0.1")
    ) + f"\nuser {getpass.getuser()}\n"
    (tmp_path / "mosquitto.conf").write_text(conf)
    broker = await asyncio.create_subprocess_exec(
        find_binary("mosquitto") or "mosquitto",
        "-c",
        str(tmp_path / "mosquitto.conf"),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        for _ in range(100):
            with contextlib.suppress(OSError):
                _, writer = await asyncio.open_connection("127.0.0.1", port)
                writer.close()
                break
            await asyncio.sleep(0.05)
        assert await suback(port, "NS-DEV", "dev-pw", ["#", f"{PREFIX}/+/readings"], False) == [
            REFUSED_V311,
            REFUSED_V311,
        ]
        readings = [f"{PREFIX}/+/readings"]
        assert await suback(port, "ingester", INGEST_PASSWORD, readings, False) == [1]
    finally:
        broker.terminate()
        await asyncio.wait_for(broker.wait(), 10)


def test_the_plugin_builds_from_source(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A fresh cache compiles the source (as on a new machine); the next call reuses it."""
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    built = subscribe_acl_plugin()
    assert built.parent == tmp_path / "sensornet"
    assert built.read_bytes()[:4] == b"\x7fELF"
    stamp = built.stat().st_mtime_ns
    assert subscribe_acl_plugin() == built and built.stat().st_mtime_ns == stamp
    assert [p.name for p in built.parent.iterdir()] == [built.name]  # no partial file left
