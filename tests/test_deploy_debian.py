"""The systemd guide's steps as written, on the real Debian packages: Mosquitto from
Debian's own ``/etc/mosquitto/mosquitto.conf`` with the guide's drop-in, and the
registry's PostgreSQL database created by the guide's statements."""

from __future__ import annotations

import asyncio
import os
import pwd
import re
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

import asyncpg
from pg_server import need_postgres
from support import mqtt_client

from sensornet import broker_files
from sensornet.registry.store import open_registry
from sensornet.settings import Settings
from wiring.mosquitto_plugin import subscribe_acl_plugin
from wiring.services import broker_acl, ensure_binaries, find_binary, free_port

DEPLOY = Path(__file__).resolve().parent.parent / "deploy"
GUIDE = (DEPLOY / "README.md").read_text()
DEBIAN_CONF = Path("/etc/mosquitto/mosquitto.conf")


def test_the_guide_installs_the_drop_in_that_is_tested() -> None:
    assert "install -m 0644 deploy/mosquitto/sensornet-debian.conf" in GUIDE
    assert "/etc/mosquitto/conf.d/sensornet.conf" in GUIDE
    drop_in = (DEPLOY / "mosquitto" / "sensornet-debian.conf").read_text()
    settings = [line.split()[0] for line in drop_in.splitlines() if line and line[0] != "#"]
    # what Debian's mosquitto.conf sets already; a second persistence_location is fatal
    assert not {"persistence_location", "persistence", "pid_file", "log_dest"} & set(settings)


def test_mosquitto_starts_from_debians_conf_with_the_drop_in() -> None:
    # not pytest's tmp_path: its parent is private to root, and Debian's broker runs as
    # the mosquitto user
    with tempfile.TemporaryDirectory(prefix="sensornet-debian-") as tmp:
        debian_broker(Path(tmp))


def debian_broker(tmp_path: Path) -> None:
    ensure_binaries()
    assert DEBIAN_CONF.exists(), "the mosquitto Debian package ships /etc/mosquitto/mosquitto.conf"
    port = free_port()
    # Debian's file, its absolute paths moved under tmp_path and nothing else changed
    conf = DEBIAN_CONF.read_text()
    for path in ("/run/mosquitto", "/var/lib/mosquitto", "/var/log/mosquitto", "/etc/mosquitto"):
        (tmp_path / path.lstrip("/")).mkdir(parents=True, exist_ok=True)
        conf = conf.replace(path, f"{tmp_path}{path}")
    (tmp_path / "etc/mosquitto/conf.d").mkdir(parents=True, exist_ok=True)
    main = tmp_path / "etc/mosquitto/mosquitto.conf"
    main.write_text(conf)
    # the drop-in as the guide installs it, its store and plugin paths moved likewise
    store = tmp_path / "var/lib/sensornet/broker"
    store.mkdir(parents=True)
    drop_in = (DEPLOY / "mosquitto" / "sensornet-debian.conf").read_text()
    drop_in = drop_in.replace("/var/lib/sensornet/broker", str(store))
    plugin = tmp_path / "usr/local/lib/sensornet_subscribe_acl.so"  # where the guide builds it
    plugin.parent.mkdir(parents=True)
    shutil.copy(subscribe_acl_plugin(), plugin)
    drop_in = drop_in.replace("/usr/local/lib/sensornet_subscribe_acl.so", str(plugin))
    drop_in = drop_in.replace("listener 1883", f"listener {port} 127.0.0.1")
    (tmp_path / "etc/mosquitto/conf.d/sensornet.conf").write_text(drop_in)
    # the store `sensornet broker setup` writes: the ingester's login and the ACL
    settings = Settings(state_dir=tmp_path / "state", mqtt_ingest_password="guide-test-pw")
    broker_files.write_part(store, broker_files.PASSWD, broker_files.DEVICES, "")
    from sensornet import broker_auth

    broker_auth.install_static(
        store,
        {settings.mqtt_ingest_user: "guide-test-pw"},
        broker_acl(settings.topic_prefix, settings.mqtt_ingest_user),
    )
    broker_files.assemble(store)
    if os.geteuid() == 0:  # Debian's broker drops to the mosquitto user, as in production
        user = pwd.getpwnam("mosquitto")
        for root, dirs, files in os.walk(tmp_path):
            for name in [root, *(os.path.join(root, n) for n in dirs + files)]:
                os.chown(name, user.pw_uid, user.pw_gid)
    broker = subprocess.Popen(
        [find_binary("mosquitto") or "mosquitto", "-c", str(main)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        start_new_session=True,
    )
    try:

        async def logins() -> None:
            deadline = time.monotonic() + 20
            while True:
                try:
                    async with mqtt_client(
                        "guide-ingester", port, settings.mqtt_ingest_user, "guide-test-pw"
                    ):
                        return
                except ConnectionRefusedError:
                    if broker.poll() is not None or time.monotonic() > deadline:
                        raise
                    await asyncio.sleep(0.1)

        try:
            asyncio.run(logins())
        except ConnectionRefusedError:
            broker.terminate()
            raise AssertionError(broker.communicate(timeout=20)[1].decode()) from None
        assert broker.poll() is None
        log = (tmp_path / "var/log/mosquitto/mosquitto.log").read_text()
        assert "Error" not in log, log
    finally:
        broker.terminate()
        _, errors = broker.communicate(timeout=20)
    assert b"Duplicate" not in errors, errors


def guide_sql(marker: str) -> list[str]:
    block = GUIDE.split(f"<!-- {marker} -->", 1)[1].split("```sql", 1)[1].split("```", 1)[0]
    return [s.strip() for s in block.split(";") if s.strip()]


async def test_the_registry_database_the_guide_creates(postgres: str | None) -> None:
    host, port = need_postgres(postgres).split(":")
    statements = guide_sql("registry-database")
    role = re.search(r"CREATE ROLE (\w+)", statements[0])
    assert role is not None
    admin = None
    for _ in range(100):  # the fixture's server may still be starting up
        try:
            admin = await asyncpg.connect(
                host=host, port=int(port), user="postgres", database="postgres"
            )
            break
        except asyncpg.CannotConnectNowError:
            await asyncio.sleep(0.1)
    assert admin is not None
    try:
        for statement in statements:
            await admin.execute(statement)
    finally:
        await admin.close()
    url = re.search(r"SENSORNET_REGISTRY_URL=(\S+)`", GUIDE)
    assert url is not None
    ours = url.group(1).replace("@127.0.0.1/", f"@{postgres}/")
    async with open_registry(ours) as engine, engine.connect() as conn:
        owner = await conn.exec_driver_sql(
            "SELECT tableowner FROM pg_tables WHERE tablename = 'sensors'"
        )
        assert owner.scalar_one() == role.group(1)  # the guide's role owns the schema
