"""The broker plugin that refuses subscriptions outside a client's read grants.

Mosquitto 2.0's ACL file grants every SUBSCRIBE and filters only deliveries, so a device
subscribing to ``#`` is told "granted" and then hears nothing. The plugin
(``deploy/mosquitto/sensornet_subscribe_acl.c``, its header says how) makes the broker
answer such a SUBACK with a refusal (0x80; MQTT 5: 0x87). It is C because Mosquitto loads
only shared objects; it is compiled here, on first use, into a cache keyed by the source's
hash (a fraction of a second), with the C compiler and the ``mosquitto-dev`` headers that
scripts/bootstrap.sh installs.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import tempfile
from pathlib import Path

from sensornet.errors import ServiceError

SOURCE = (
    Path(__file__).resolve().parent.parent / "deploy" / "mosquitto" / ("sensornet_subscribe_acl.c")
)
HEADER = Path("/usr/include/mosquitto_broker.h")
DEBIAN_PACKAGES = ("gcc", "libc6-dev", "mosquitto-dev", "libmosquitto-dev")


def _cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    path = Path(base) / "sensornet"
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError:
        path = Path(tempfile.gettempdir()) / f"sensornet-{os.getuid()}"
        path.mkdir(mode=0o700, exist_ok=True)
    return path


def _build_tools() -> str:
    """The C compiler, after installing it and the headers when missing (as root with
    apt-get, like ``wiring.services.ensure_binaries``); otherwise say what to run."""
    compiler = shutil.which("cc") or shutil.which("gcc")
    if compiler is not None and HEADER.exists():
        return compiler
    command = f"apt-get update && apt-get install -y {' '.join(DEBIAN_PACKAGES)}"
    if os.geteuid() != 0 or shutil.which("apt-get") is None:
        raise ServiceError(
            "the broker's subscription plugin needs a C compiler and Mosquitto's plugin "
            f"headers; install them with: {command} (scripts/bootstrap.sh does)"
        )
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    for argv in (
        ["apt-get", "update", "-qq"],
        ["apt-get", "install", "-y", "-qq", *DEBIAN_PACKAGES],
    ):
        result = subprocess.run(argv, env=env, capture_output=True, text=True, check=False)
        if result.returncode != 0:
            raise ServiceError(f"{' '.join(argv)} failed: {result.stderr.strip()[-500:]}")
    compiler = shutil.which("cc") or shutil.which("gcc")
    if compiler is None or not HEADER.exists():
        raise ServiceError(f"installed {' '.join(DEBIAN_PACKAGES)}, still no compiler/headers")
    return compiler


def subscribe_acl_plugin() -> Path:
    """The compiled plugin (built now if this source has not been built before)."""
    source = SOURCE.read_bytes()
    digest = hashlib.sha256(source).hexdigest()[:16]
    target = _cache_dir() / f"sensornet_subscribe_acl-{digest}.so"
    if target.exists():
        return target
    compiler = _build_tools()
    partial = target.with_name(f"{target.name}.{os.getpid()}.tmp")
    result = subprocess.run(
        [compiler, "-shared", "-fPIC", "-O2", "-Wall", "-o", str(partial), str(SOURCE)],
        capture_output=True,
        text=True,
        check=False,
    )
    if result.returncode != 0:
        partial.unlink(missing_ok=True)
        raise ServiceError(f"building {SOURCE.name} failed: {result.stderr.strip()[-1000:]}")
    os.replace(partial, target)  # atomic: a concurrent build wins or loses whole
    return target
