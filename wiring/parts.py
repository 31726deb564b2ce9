"""The product's parts (ingester, API, simulator, storage layout) assembled from settings:
used by the CLI, the demo, benchmarks and tests, so every entry point runs the same
assembly. This layer may import every part; the parts import only the core."""

from __future__ import annotations

import asyncio
import contextlib
import errno
import gc
import logging
import ssl
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from typing import TYPE_CHECKING

from sensornet.catalogue import load_catalogue
from sensornet.district import load_district
from sensornet.influx import influx_client
from sensornet.mqtt_tls import MqttTls
from sensornet.registry.store import DeviceCache, DeviceInfo, open_registry, upsert_devices
from sensornet.settings import Settings

if TYPE_CHECKING:
    import uvicorn

log = logging.getLogger("sensornet")


async def prepare_storage(
    settings: Settings, progress: Callable[[int, int], None] | None = None
) -> None:
    """Create the database, retention policies and continuous queries (idempotent)."""
    from sensornet.storage_layout import apply_storage_layout

    async with influx_client(settings) as influx:
        await apply_storage_layout(influx, settings, load_catalogue(), progress)


async def run_ingester(
    settings: Settings, stop: asyncio.Event, ready: asyncio.Event | None = None
) -> None:
    from ingest.metrics import serve_metrics
    from ingest.service import Ingester

    async with (
        influx_client(settings) as influx,
        open_registry(settings.registry_database_url) as registry,
    ):
        ingester = Ingester(settings, influx, DeviceCache(registry), load_catalogue())
        receiving = ready if ready is not None else asyncio.Event()
        with serve_metrics(
            ingester.stats,
            settings.ingest_metrics_port,
            settings.metrics_host,
            receiving=receiving.is_set,
        ):
            delay = 1.0
            while True:
                try:
                    await ingester.run(stop, receiving)
                    return
                except OSError as exc:
                    if not broker_unreachable(exc) or stop.is_set():
                        raise
                    # the error names the broker (an input's own: LoRaWAN, AMQP, MQTT)
                    log.error(
                        "broker unreachable (%s); retrying in %.0f s", str(exc) or repr(exc), delay
                    )
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(delay):
                        await stop.wait()
                if stop.is_set():
                    return
                delay = min(delay * 2, 30.0)


def broker_unreachable(exc: OSError) -> bool:
    """A connection that could not be made (refused, reset, no route, unknown host) is
    retried: the broker may come up later. A TLS failure or a port we cannot bind is a
    configuration error that retrying cannot fix."""
    return not isinstance(exc, ssl.SSLError) and exc.errno not in (errno.EADDRINUSE, errno.EACCES)


def tune_gc_for_throughput() -> None:
    """For a process that makes and drops a few objects per message, all day.

    Its objects (decoded JSON, messages, lines) die by reference counting, not by the
    cycle collector; what the collector costs is walking everything alive at each full
    collection. So: freeze what start-up made (modules, settings, catalogue) out of its
    sight, and collect the youngest generation less often. Measured in docs/benchmarks.md.
    """
    import ingest.service  # noqa: F401 - the imports are what there is to freeze

    quiet_gc()


def quiet_gc() -> None:
    """Freeze what the process made so far out of the cycle collector's sight and collect
    the youngest generation less often (``tune_gc_for_throughput``; the northbound pusher,
    whose rows and bodies die by reference counting too)."""
    gc.collect()
    gc.freeze()
    gc.set_threshold(20_000, 20, 20)


async def register_fleet(settings: Settings, fleet: Sequence[DeviceInfo]) -> int:
    async with open_registry(settings.registry_database_url) as registry:
        return await upsert_devices(registry, fleet)


def default_fleet(count: int, seed: int = 151) -> list[DeviceInfo]:
    from gateway_sim.fleet import build_fleet

    return build_fleet(load_catalogue(), load_district(), count, seed=seed)


def senders(fleet: Sequence[DeviceInfo]) -> set[str]:
    """Ids that log in to the broker: sensors (a gateway's too, for their status) and
    the gateways whose packs carry their sensors' readings."""
    return {d.id for d in fleet} | {d.gateway_id for d in fleet if d.gateway_id}


async def issue_fleet_credentials(
    settings: Settings, fleet: Sequence[DeviceInfo], actor: str, only: Sequence[str] = ()
) -> dict[str, str]:
    """Every simulated sensor and gateway its own MQTT password, through the registry and
    delivered to the broker as a real device's would be, so a simulator of its own fleet
    needs no shared identity. Devices that had credentials get new ones (rotation): only
    for fleets the simulator made itself, never for a registry's real devices. ``only``:
    just these of the fleet's senders (those that push over HTTP)."""
    from sensornet.broker_auth import broker_target, issue_credentials, sync_broker

    async with open_registry(settings.registry_database_url) as registry:
        ids = sorted(senders(fleet) & set(only)) if only else sorted(senders(fleet))
        credentials = await issue_credentials(registry, ids, actor)
        await sync_broker(registry, broker_target(settings))
    return credentials


@contextlib.asynccontextmanager
async def fleet_login(
    settings: Settings, fleet: Sequence[DeviceInfo], credentials: Mapping[str, str] | None
) -> AsyncIterator[str]:
    """The password for the simulator's shared login, when some device of ``fleet`` has no
    credentials of its own: the fleet identity (test-only) then exists in the broker for
    this block only. With every device's own credentials there is no shared login ("")."""
    if senders(fleet) <= set(credentials or {}):
        yield ""
        return
    from sensornet.broker_auth import fleet_identity

    async with fleet_identity(settings):
        yield settings.fleet_password()


async def run_simulator(
    settings: Settings,
    fleet: Sequence[DeviceInfo],
    stop: asyncio.Event,
    interval_scale: float = 1.0,
    speed: float = 1.0,
    credentials: dict[str, str] | None = None,
) -> None:
    """``speed`` > 1 runs the simulated city's clock faster (60: a day in 24 minutes)."""
    from gateway_sim.publisher import LivePublisher, community_push

    async with fleet_login(settings, fleet, credentials) as fleet_password:
        publisher = LivePublisher(
            host=settings.mqtt_host,
            port=settings.mqtt_port,
            username=settings.mqtt_fleet_user,
            password=fleet_password,
            topic_prefix=settings.topic_prefix,
            fleet=fleet,
            catalogue=load_catalogue(),
            interval_scale=interval_scale,
            speed=speed,
            credentials=credentials,
            tls=MqttTls.from_settings(settings),
            http_push=community_push(settings),
        )
        await publisher.run(stop)


async def run_api(
    settings: Settings, stop: asyncio.Event, ready: asyncio.Event | None = None
) -> None:
    import uvicorn

    from api.app import create_app

    config = uvicorn.Config(
        create_app(settings),
        host=settings.api_host,
        port=settings.api_port,
        log_level="warning",
        lifespan="on",
        proxy_headers=False,  # X-Forwarded-For: only from trusted proxies (api.opendata_routes)
    )
    await serve_until_stopped(uvicorn.Server(config), stop, ready)


async def serve_until_stopped(
    server: uvicorn.Server, stop: asyncio.Event, ready: asyncio.Event | None = None
) -> None:
    """Run a uvicorn server in this loop until ``stop``; ``ready`` once it listens."""
    task = asyncio.create_task(server.serve())
    if ready is not None:
        # uvicorn offers no started event to wait on
        while not server.started and not task.done():  # noqa: ASYNC110
            await asyncio.sleep(0.02)
        ready.set()
    with contextlib.suppress(asyncio.CancelledError):
        await stop.wait()
    server.should_exit = True
    await task


@contextlib.asynccontextmanager
async def stop_on_signals() -> AsyncIterator[asyncio.Event]:
    """An event set by SIGINT/SIGTERM, so every part can drain before exit."""
    import signal

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    try:
        yield stop
    finally:
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(sig)
