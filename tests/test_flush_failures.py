"""No batch fails silently, on real processes: each way a batch can fail to become durable
(InfluxDB answering a status the writer has no rule for, rate limiting, the registry
down, the spool's disk full, spool segments that do not read back) is logged, counted,
retried or spooled, and acks stay in order: every reading ends in InfluxDB exactly once."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import sqlite3
import subprocess
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path

import httpx
import pytest
from faultproxy import FaultProxy
from prometheus_client.parser import text_string_to_metric_families
from support import running, wait_until
from test_faults import all_stored, publish, readings_epoch_ms, replace_settings

from gateway_sim.synthetic import make_readings
from ingest.spool import QUARANTINE
from sensornet.accounting import count_stored
from sensornet.influx import MAX_RETRY_AFTER_S, InfluxClient, retry_after_seconds
from sensornet.lineprotocol import encode_point
from sensornet.registry.store import DeviceInfo
from sensornet.settings import Settings
from wiring.parts import default_fleet, register_fleet, run_ingester
from wiring.services import free_port

pytestmark = pytest.mark.timeout(240)


@pytest.fixture
def fleet() -> list[DeviceInfo]:
    return default_fleet(50)


@pytest.fixture
async def proxy(settings: Settings) -> AsyncIterator[FaultProxy]:
    async with FaultProxy(settings.influx_url).serving() as proxy:
        yield proxy


def through(settings: Settings, proxy: FaultProxy | None = None, **changes: object) -> Settings:
    """The ingester's settings: metrics served, small batches, InfluxDB via ``proxy``."""
    if proxy is not None:
        changes["influx_url"] = f"http://127.0.0.1:{proxy.port}"
    return replace_settings(
        settings, ingest_metrics_port=free_port(), ingest_batch_size=200, **changes
    )


async def metrics(settings: Settings) -> dict[str, float]:
    """The ingester's /metrics as {'name{label="v"}': value}."""
    url = f"http://127.0.0.1:{settings.ingest_metrics_port}/metrics"
    async with httpx.AsyncClient() as http:
        text = (await http.get(url)).text
    out = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            labels = ",".join(f'{k}="{v}"' for k, v in sorted(sample.labels.items()))
            out[f"{sample.name}{{{labels}}}" if labels else sample.name] = sample.value
    return out


def metric(settings: Settings, name: str) -> Callable[[], Awaitable[float]]:
    """A wait_until predicate: the metric's value (true once above zero)."""

    async def value() -> float:
        return (await metrics(settings)).get(name, 0.0)

    return value


async def test_unknown_status_422_is_retried_then_spooled_never_dropped(
    settings: Settings, influx: InfluxClient, fleet: list[DeviceInfo], proxy: FaultProxy
) -> None:
    """422 has no rule in the writer: it raised out of the flush, whose task was dropped
    unread, and its readings stayed unacknowledged while later batches were acked."""
    ingest = through(settings, proxy)
    await register_fleet(settings, fleet)
    async with running(run_ingester, ingest):
        proxy.answer(422)
        await publish(settings, fleet, 2_000)
        spool = settings.state_dir / "spool" / settings.ingest_client_id
        await wait_until(lambda: _has_segments(spool), timeout_s=60)
        found = await metrics(ingest)
        assert found['sensornet_ingest_influx_errors_total{kind="unexpected_status"}'] >= 1
        proxy.set_mode("ok")
        await all_stored(influx, fleet, 2_000)
        await wait_until(lambda: _no_segments(spool), timeout_s=60)


async def test_a_batch_answered_422_is_acked_before_the_later_ones(
    settings: Settings, influx: InfluxClient, fleet: list[DeviceInfo], proxy: FaultProxy
) -> None:
    """Only the first writes fail: the batches behind them are written at once, but none
    is acked past the failed one, which is retried; nothing waits for a reconnect."""
    ingest = through(settings, proxy)
    await register_fleet(settings, fleet)
    async with running(run_ingester, ingest):
        proxy.answer(422, times=2)
        await publish(settings, fleet, 2_000)
        await all_stored(influx, fleet, 2_000)
    assert proxy.answered[422] == 2


async def test_429_waits_its_retry_after_then_spools(
    settings: Settings, influx: InfluxClient, fleet: list[DeviceInfo], proxy: FaultProxy
) -> None:
    """Rate limited: no writer asks again before Retry-After; the readings are spooled
    (and acked) rather than held, and replayed once InfluxDB takes writes again."""
    ingest = through(settings, proxy)
    await register_fleet(settings, fleet)
    async with running(run_ingester, ingest):
        proxy.answer(429, {"Retry-After": "2"})
        await publish(settings, fleet, 2_000)
        spool = settings.state_dir / "spool" / settings.ingest_client_id
        await wait_until(lambda: _has_segments(spool), timeout_s=60)
        await wait_until(lambda: _answered_for(proxy, 6.0), timeout_s=60)
        proxy.set_mode("ok")
        await all_stored(influx, fleet, 2_000)
        found = await metrics(ingest)
    assert found['sensornet_ingest_influx_errors_total{kind="rate_limited"}'] >= 2
    # Each writer (the flushes in flight, the replay, the platform report) waits 2 s
    # between its tries, so any 1.9 s holds at most one try of each.
    writers = settings.ingest_writes_in_flight + 2
    times = proxy.answered_at
    busiest = max(sum(1 for t in times if start <= t < start + 1.9) for start in times)
    assert busiest <= writers, f"{busiest} writes within 1.9 s of a 429 with Retry-After: 2"


async def test_registry_down_batches_go_on_with_the_cached_sensors(
    settings: Settings, influx: InfluxClient, fleet: list[DeviceInfo]
) -> None:
    """A registry whose every read fails (its sensors table gone, as in a damaged file or
    a migration half done; another process's lock no longer does it: the registry is in
    WAL mode, where readers never wait for a writer). The flush read it itself, failed
    with it, and was dropped unread."""
    ingest = through(settings)
    await register_fleet(settings, fleet)
    async with running(run_ingester, ingest):
        db = sqlite3.connect(
            settings.state_dir / "registry.db", isolation_level=None, check_same_thread=False
        )
        try:  # in a thread: it may wait out a read of the ingester's, which needs the loop
            await asyncio.to_thread(db.execute, "ALTER TABLE sensors RENAME TO sensors_away")
            await wait_until(metric(ingest, "sensornet_ingest_registry_stale"), timeout_s=60)
            await publish(settings, fleet, 2_000)
            await all_stored(influx, fleet, 2_000)  # while the registry is still locked
            found = await metrics(ingest)
            assert found["sensornet_ingest_registry_stale"] == 1
            assert found['sensornet_ingest_failures_total{cause="registry"}'] >= 1
            assert found["sensornet_ingest_stored_total"] == 2_000
        finally:
            db.execute("ALTER TABLE sensors_away RENAME TO sensors")
            db.close()

        async def fresh() -> bool:
            return (await metrics(ingest))["sensornet_ingest_registry_stale"] == 0

        await wait_until(fresh, timeout_s=60)


@pytest.fixture
def full_spool_disk(settings: Settings) -> Iterator[Path]:
    """The ingester's spool folder on a real 4 MiB tmpfs filled to the last byte by
    ``filler`` (every write is ENOSPC from the kernel until it is removed)."""
    if os.geteuid() != 0:
        pytest.skip("mounting a tmpfs needs root (CI and the project's machines are root)")
    spool = settings.state_dir / "spool" / settings.ingest_client_id
    spool.mkdir(parents=True)
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=4m,mode=700", "tmpfs", str(spool)],
                   check=True)  # fmt: skip
    try:
        fd = os.open(spool / "filler", os.O_WRONLY | os.O_CREAT, 0o600)
        try:
            with contextlib.suppress(OSError):
                while os.write(fd, b"\0" * 65536):  # until the kernel says ENOSPC
                    pass
        finally:
            os.close(fd)
        yield spool
    finally:
        subprocess.run(["umount", "-l", str(spool)], check=False)


async def test_spool_disk_full_keeps_batches_unacked_until_it_can_write(
    settings: Settings,
    influx: InfluxClient,
    fleet: list[DeviceInfo],
    proxy: FaultProxy,
    full_spool_disk: Path,
) -> None:
    """InfluxDB down and the spool's disk full: the OSError escaped the flush, which was
    dropped unread. Now nothing is acked meanwhile, the alarm is up, and once the disk has
    room the same batches are spooled, acked in order and replayed."""
    ingest = through(settings, proxy)
    await register_fleet(settings, fleet)
    spool = full_spool_disk
    async with running(run_ingester, ingest):
        proxy.set_mode("error")
        await publish(settings, fleet, 2_000)
        await wait_until(metric(ingest, "sensornet_ingest_spool_failing"), timeout_s=60)
        await wait_until(metric(ingest, 'sensornet_ingest_failures_total{cause="spool_write"}'))
        found = await metrics(ingest)
        assert found["sensornet_ingest_batches_total"] == 0  # nothing acked: not durable
        assert found["sensornet_ingest_received_messages_total"] == 0
        assert not list(spool.glob("*.tmp"))  # failed attempts leave no temporary file
        (spool / "filler").unlink()  # room again
        await wait_until(lambda: _has_segments(spool), timeout_s=60)

        async def writable() -> bool:
            return (await metrics(ingest))["sensornet_ingest_spool_failing"] == 0

        await wait_until(writable, timeout_s=60)
        proxy.set_mode("ok")
        await all_stored(influx, fleet, 2_000)
        await wait_until(lambda: _no_segments(spool), timeout_s=60)


async def test_truncated_and_corrupt_segments_are_quarantined_and_replay_goes_on(
    settings: Settings,
    influx: InfluxClient,
    fleet: list[DeviceInfo],
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Segments left by a crash on a disk that lies about fsync, or a bad sector: replay
    died at the first that did not decode (UnicodeDecodeError), leaving every later one
    unreplayed, and stored what a truncated one's cut line happened to parse as."""
    ingest = through(settings)
    await register_fleet(settings, fleet)
    epoch = readings_epoch_ms()
    lines = [  # the lines the ingester writes for these readings, timed as publish times them
        encode_point(
            r.device.type,
            {"sensor_id": r.device.id, "subdistrict": r.device.subdistrict},
            {**r.values, "seq": r.seq},
            (epoch + r.seq * 100) * 1_000_000,
        )
        for r in make_readings(fleet, 400)
    ]
    good, bad = lines[:300], lines[300:]
    spool = settings.state_dir / "spool" / settings.ingest_client_id
    spool.mkdir(parents=True)
    (spool / "000000000001.lp").write_text("\n".join(good[:150]) + "\n")
    corrupt = ("\n".join(bad[:50]) + "\n").encode().replace(b"sensor_id=", b"sensor_id=\xff", 1)
    (spool / "000000000002.lp").write_bytes(corrupt)
    truncated = ("\n".join(bad[50:]) + "\n").encode()[:-30]  # the last line cut short
    (spool / "000000000003.lp").write_bytes(truncated)
    (spool / "000000000004.lp").write_text("\n".join(good[150:]) + "\n")
    (spool / "notes.lp").write_text("an operator's file, not the spool's\n")
    with caplog.at_level(logging.WARNING, logger="sensornet.ingest"):
        async with running(run_ingester, ingest):
            await all_stored(influx, fleet, 300)
            await wait_until(lambda: _no_segments(spool), timeout_s=60)
            found = await metrics(ingest)
        assert found['sensornet_ingest_failures_total{cause="spool_corrupt"}'] == 2
        assert found["sensornet_ingest_replayed_total"] == 300
    assert await count_stored(influx, {d.type for d in fleet}) == 300  # no bad line at all
    kept = sorted(p.read_bytes() for p in (spool / QUARANTINE).iterdir())
    assert kept == sorted([corrupt, truncated])
    assert (spool / "notes.lp").exists()
    alarms = [r.getMessage() for r in caplog.records if r.getMessage().startswith("ALARM")]
    assert any("000000000002.lp" in a for a in alarms)
    assert any("000000000003.lp" in a and "truncated" in a for a in alarms)


def test_retry_after_as_seconds_or_date_is_bounded() -> None:
    assert retry_after_seconds("2") == 2.0
    assert retry_after_seconds("0.5") == 0.5
    assert retry_after_seconds("-3") == 0.0
    assert retry_after_seconds("86400") == MAX_RETRY_AFTER_S
    assert retry_after_seconds("Wed, 21 Oct 2015 07:28:00 GMT", now=1445412470.0) == 10.0
    assert retry_after_seconds("soon") is None
    assert retry_after_seconds(None) is None


async def _has_segments(path: Path) -> bool:
    return path.exists() and any(path.glob("*.lp"))


async def _no_segments(path: Path) -> bool:
    return not any(p.name[0].isdigit() for p in path.glob("*.lp"))


async def _answered_for(proxy: FaultProxy, seconds: float) -> bool:
    times = proxy.answered_at
    return bool(times) and times[-1] - times[0] >= seconds
