"""The broker's credential store: files that sensornet writes and Mosquitto reads.

One directory (``SENSORNET_BROKER_AUTH_DIR``) shared by whoever changes credentials (API
workers, the CLI, the simulator) and the broker:

  passwd.static, acl.static   service identities (the ingester), from settings, at set-up
  passwd.fleet, acl.fleet     the simulator's fleet identity (test-only), only while it runs
  passwd.devices              every device the registry lets connect
  passwd, acl                 what Mosquitto reads: the parts above joined, plus a canary

A change is *delivered* under an exclusive lock on ``sync.lock``: the parts are joined
into ``passwd``/``acl`` (atomic renames, acl first), the broker is asked to reload
(``signal``: SIGHUP to the pid in ``mosquitto.pid``, the local services' way; ``watch``:
the broker's host reloads when the files change: compose's loop, systemd's path unit),
and then the canary (a login whose password is new at every delivery) is tried until the
broker accepts it. Only then does the caller return: a broker that is down, did not reload
or could not read the files is a :class:`BrokerSyncError`, never a silent success. The
lock also makes concurrent writers (two API workers) queue, each writing a state that
contains every change committed before it took the lock, so none is lost.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import fcntl
import hashlib
import os
import secrets
import signal
import socket
import time
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from sensornet import mqtt_wire
from sensornet.errors import MqttTlsError, SensornetError
from sensornet.mqtt_tls import MqttTls

STATIC = "static"
FLEET = "fleet"
DEVICES = "devices"
PASSWD = "passwd"  # noqa: S105 - a file name
ACL = "acl"
LOCK = "sync.lock"
PID = "mosquitto.pid"
#: not a valid sensor id (those start with a letter or digit), so never a device's name
CANARY_USER = "_sensornet_sync"
FILE_MODE = 0o640  # the broker may run as another user of the directory's group

Reload = Literal["signal", "watch"]

ITERATIONS = 101  # what mosquitto_passwd 2.0 writes: for the operator-chosen service passwords
#: Device passwords are 192 random bits, so no iteration count makes guessing one from its
#: hash easier or harder; but Mosquitto re-verifies every connected client's password on
#: each reload, so at 101 iterations a reload with 10,000 devices connected cost the broker
#: ~0.5 s of CPU, at 1 iteration ~0.05 s (docs/registry.md, docs/benchmarks.md).
DEVICE_ITERATIONS = 1
SALT_BYTES = 12


class BrokerSyncError(SensornetError):
    """The broker did not take the credential files (down, not reloaded, unreadable)."""


@dataclass(frozen=True, slots=True)
class BrokerTarget:
    """Where the credential files are, how the broker is told, and how to reach it."""

    auth_dir: Path
    reload: Reload = "signal"
    host: str = "127.0.0.1"
    port: int = 1883
    confirm_timeout_s: float = 30.0
    #: the broker's TLS listener, as the platform's other clients reach it
    tls: MqttTls | None = None
    #: the broker asks the platform at each connection (the scaled shape's RabbitMQ and
    #: its HTTP auth backend): there is nothing to deliver, a change is live at once
    asks_registry: bool = False


def mosquitto_hash(password: str, salt: bytes | None = None, iterations: int = ITERATIONS) -> str:
    """``$7$<iterations>$<salt b64>$<PBKDF2-SHA512 b64>``, as ``mosquitto_passwd`` writes."""
    salt = salt if salt is not None else secrets.token_bytes(SALT_BYTES)
    digest = hashlib.pbkdf2_hmac("sha512", password.encode(), salt, iterations)
    return f"$7${iterations}${base64.b64encode(salt).decode()}${base64.b64encode(digest).decode()}"


def atomic_write(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}.tmp")
    tmp.write_text(text)
    tmp.chmod(FILE_MODE)
    os.replace(tmp, path)


def part(auth_dir: Path, kind: str, name: str) -> Path:
    return auth_dir / f"{kind}.{name}"


def write_part(auth_dir: Path, kind: str, name: str, text: str | None) -> None:
    """Write one part (``None`` removes it)."""
    path = part(auth_dir, kind, name)
    if text is None:
        path.unlink(missing_ok=True)
    else:
        auth_dir.mkdir(parents=True, exist_ok=True)
        atomic_write(path, text)


def password_lines(users: Mapping[str, str]) -> str:
    """``user:hash`` lines; the values are already hashes."""
    return "".join(f"{u}:{h}\n" for u, h in sorted(users.items()))


def _read(path: Path) -> str:
    return path.read_text() if path.exists() else ""


def assemble(auth_dir: Path, canary_hash: str | None = None) -> None:
    """Join the parts into ``acl`` then ``passwd`` (the reload trigger for path watchers).
    A name in an earlier part wins over the same name later (service users first)."""
    acl = "".join(_read(part(auth_dir, ACL, k)) + "\n" for k in (STATIC, FLEET))
    atomic_write(auth_dir / ACL, acl)
    taken: set[str] = set()
    lines: list[str] = []
    for kind in (STATIC, FLEET, DEVICES):
        for line in _read(part(auth_dir, PASSWD, kind)).splitlines():
            name = line.split(":", 1)[0]
            if line and name not in taken and name != CANARY_USER:
                taken.add(name)
                lines.append(line)
    if canary_hash is not None:
        lines.append(f"{CANARY_USER}:{canary_hash}")
    atomic_write(auth_dir / PASSWD, "".join(f"{line}\n" for line in lines))


@contextlib.asynccontextmanager
async def locked(auth_dir: Path, timeout_s: float = 120.0) -> AsyncIterator[None]:
    """Exclusive ``flock`` on ``sync.lock``, across processes and within one; polled, so a
    cancelled waiter leaves nothing behind."""
    os.makedirs(auth_dir, exist_ok=True)
    fd = os.open(auth_dir / LOCK, os.O_RDWR | os.O_CREAT, FILE_MODE)
    try:
        deadline = time.monotonic() + timeout_s
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() > deadline:
                    raise BrokerSyncError(
                        f"another credential update held {auth_dir / LOCK} for {timeout_s:.0f}s"
                    ) from None
                await asyncio.sleep(0.005)
        yield
    finally:
        os.close(fd)  # releases the lock


def signal_reload(auth_dir: Path) -> None:
    pid_file = auth_dir / PID
    try:
        pid = int(pid_file.read_text())
        os.kill(pid, signal.SIGHUP)
    except (OSError, ValueError) as exc:
        raise BrokerSyncError(
            f"could not signal the broker to reload (pid file {pid_file}): {exc}; start it "
            f"(sensornet services up), or set SENSORNET_BROKER_RELOAD=watch where the broker's "
            f"host reloads on file change (deploy/README.md)"
        ) from exc


def connack(
    host: str,
    port: int,
    username: str,
    password: str,
    timeout_s: float = 5.0,
    tls: MqttTls | None = None,
) -> int:
    """One MQTT 3.1.1 CONNECT (clean session) with these credentials: the CONNACK return
    code (0 accepted, 4/5 refused), -1 if the broker answered nothing."""
    packet = mqtt_wire.connect_packet(f"{username}-{secrets.token_hex(3)}", username, password)
    with contextlib.ExitStack() as stack:
        sock = stack.enter_context(socket.create_connection((host, port), timeout=timeout_s))
        if tls is not None:
            try:
                sock = stack.enter_context(tls.context().wrap_socket(sock, server_hostname=host))
            except OSError as exc:
                raise tls.failure(exc, host, port) from exc
        sock.sendall(packet)
        reply = sock.recv(4)
        with contextlib.suppress(OSError):
            sock.sendall(mqtt_wire.DISCONNECT)
    code = mqtt_wire.connack_code(reply)
    return -1 if code is None else code


async def confirm(target: BrokerTarget, canary_password: str) -> None:
    """Wait until the broker accepts this delivery's canary: it has reloaded these files."""
    deadline = time.monotonic() + target.confirm_timeout_s
    last = "no answer"
    while time.monotonic() < deadline:
        try:
            code = await asyncio.to_thread(
                connack, target.host, target.port, CANARY_USER, canary_password, 5.0, target.tls
            )
        except MqttTlsError as exc:
            raise BrokerSyncError(f"the credential change cannot be confirmed: {exc}") from exc
        except OSError as exc:
            last = f"cannot connect to {target.host}:{target.port}: {exc}"
        else:
            if code == 0:
                return
            last = f"credentials of this update refused (CONNACK {code})"
        await asyncio.sleep(0.02)
    raise BrokerSyncError(
        f"the broker at {target.host}:{target.port} did not take the credential files in "
        f"{target.auth_dir} within {target.confirm_timeout_s:.0f}s ({last}); see its log"
    )


async def deliver(target: BrokerTarget, devices: Mapping[str, str] | None = None) -> None:
    """Write ``passwd.devices`` (if given), join the parts, have the broker reload, and
    confirm. The caller holds :func:`locked` on ``target.auth_dir``."""
    canary = secrets.token_urlsafe(24)
    canary_hash = mosquitto_hash(canary, iterations=DEVICE_ITERATIONS)

    def write() -> None:
        if devices is not None:
            write_part(target.auth_dir, PASSWD, DEVICES, password_lines(devices))
        assemble(target.auth_dir, canary_hash)
        if target.reload == "signal":
            signal_reload(target.auth_dir)

    await asyncio.to_thread(write)
    await confirm(target, canary)


def broker_reachable(target: BrokerTarget) -> None:
    """Before a change that needs the broker: refuse early when it cannot be reached."""
    if target.reload == "signal" and not (target.auth_dir / PID).exists():
        raise BrokerSyncError(
            f"no broker runs from {target.auth_dir} (no {PID}); start it (sensornet services "
            f"up) before changing credentials"
        )
    try:
        with socket.create_connection((target.host, target.port), timeout=5):
            pass
    except OSError as exc:
        raise BrokerSyncError(
            f"the broker at {target.host}:{target.port} is not reachable ({exc}); nothing was "
            f"changed: start it and try again"
        ) from exc
