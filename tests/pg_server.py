"""A real PostgreSQL for the registry tests, started under a temporary directory.

Uses the Debian ``postgresql`` package's binaries (installed with apt-get when missing
and we are root). PostgreSQL refuses to run as root, so as root the server runs as the
``postgres`` user the package creates.
"""

from __future__ import annotations

import contextlib
import glob
import os
import pwd
import shutil
import subprocess
import tempfile
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from sensornet.settings import Settings
from wiring.services import _port_open, free_port


def pg_bin(name: str) -> str | None:
    found = shutil.which(name)
    if found:
        return found
    candidates = sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"))
    return candidates[-1] if candidates else None


def ensure_postgres() -> str | None:
    """The directory of initdb/postgres, installing the Debian package if we may."""
    if pg_bin("initdb") is None and os.geteuid() == 0 and shutil.which("apt-get"):
        env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
        for argv in (
            ["apt-get", "update", "-qq"],
            ["apt-get", "install", "-y", "-qq", "postgresql"],
        ):
            subprocess.run(argv, env=env, capture_output=True, check=False)
    initdb = pg_bin("initdb")
    return str(Path(initdb).resolve().parent) if initdb else None


@contextlib.contextmanager
def postgres_server() -> Iterator[str | None]:
    """Yield ``host:port`` of a fresh server with trust auth for user ``postgres``, or
    None when PostgreSQL cannot be had here."""
    bindir = ensure_postgres()
    if bindir is None:
        yield None
        return
    home = Path(tempfile.mkdtemp(prefix="sensornet-pg-"))
    data = home / "data"
    run_as: list[str] = []
    if os.geteuid() == 0:
        user = pwd.getpwnam("postgres")
        os.chown(home, user.pw_uid, user.pw_gid)
        run_as = ["runuser", "-u", "postgres", "--"]
    port = free_port()
    subprocess.run(
        [
            *run_as,
            f"{bindir}/initdb",
            "-D",
            str(data),
            "-U",
            "postgres",
            "--auth=trust",
            "--no-sync",
            "-E",
            "UTF8",
        ],
        check=True,
        capture_output=True,
    )
    log = (home / "postgres.log").open("ab")
    proc = subprocess.Popen(
        [
            *run_as,
            f"{bindir}/postgres",
            "-D",
            str(data),
            "-p",
            str(port),
            "-h",
            "127.0.0.1",
            "-k",
            str(home),
            "-c",
            "fsync=off",
            "-c",
            "full_page_writes=off",
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    try:
        deadline = time.monotonic() + 30
        while not _port_open("127.0.0.1", port):
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"postgres did not start; see {home / 'postgres.log'}")
            time.sleep(0.05)
        yield f"127.0.0.1:{port}"
    finally:
        proc.terminate()
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()
        shutil.rmtree(home, ignore_errors=True)


BACKENDS = ["sqlite", "postgresql"]


def need_postgres(postgres: str | None) -> str:
    """The server's address; without one, skip, except under CI: `make test` installs the
    package (scripts/bootstrap.sh --test), so there its absence is a failure, not a skip."""
    if postgres is None:
        if os.environ.get("CI"):
            pytest.fail("PostgreSQL binaries not available (scripts/bootstrap.sh --test)")
        pytest.skip("PostgreSQL binaries not available (apt-get install postgresql)")
    return postgres


async def registry_on(backend: str, settings: Settings, postgres: str | None) -> Settings:
    """``settings`` whose registry is SQLite (as given) or a fresh PostgreSQL database;
    for a test module's ``settings`` override parametrised over ``BACKENDS``."""
    if backend == "sqlite":
        return settings
    postgres = need_postgres(postgres)
    import asyncpg

    name = f"reg_{uuid.uuid4().hex[:12]}"
    host, port = postgres.split(":")
    conn = await asyncpg.connect(host=host, port=int(port), user="postgres", database="postgres")
    try:
        await conn.execute(f'CREATE DATABASE "{name}"')
    finally:
        await conn.close()
    url = f"postgresql+asyncpg://postgres@{postgres}/{name}"
    return settings.model_copy(update={"registry_url": url})
