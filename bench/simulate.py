"""``sensornet bench simulate``: the load generator's sustained QoS 1 publish rate
(broker-acknowledged) next to the broker's own ceiling, measured in the same run with
Mosquitto's C client (``mosquitto_pub -l``, several in parallel) on the same messages.

Both phases publish single readings to a private broker with no subscriber, so the
figure is what the broker can take from a client, not what an ingester drains.
"""

from __future__ import annotations

import json
import secrets
import subprocess
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from sensornet.errors import SensornetError

if TYPE_CHECKING:
    from wiring.services import Mosquitto

PREFIX = "city/v1"
USER = "simulator"


CHUNK_LINES = 25_000  # mosquitto_pub 2.0.11 -l stops early on long inputs (~35k lines)


def _publish_files(argv: list[str], files: list[Path], count_acks: bool) -> int:
    """Run ``mosquitto_pub -l`` on each file in turn; returns the PUBACKs it got (with
    ``count_acks``, from its debug output) or else the lines it was given."""
    done_lines = 0
    for path in files:
        with path.open("rb") as stdin:
            done = subprocess.run(argv, stdin=stdin, capture_output=True, check=False)
        if done.returncode != 0:
            raise SensornetError(f"mosquitto_pub failed: {done.stderr.decode()[-300:]}")
        if count_acks:
            done_lines += done.stdout.count(b"received PUBACK")
        else:
            done_lines += path.read_bytes().count(b"\n")
    return done_lines


def ceiling(
    broker: Mosquitto,
    password: str,
    lines: list[list[bytes]],
    topics: list[str],
    count_acks: bool = False,
) -> tuple[int, int, float]:
    """Publish every line with ``mosquitto_pub -l -q 1``, one client per list in
    parallel; returns (lines, messages counted, seconds). On long inputs mosquitto_pub
    2.0.11 quits after ~35k lines without an error, so inputs are cut into 25k-line
    files (complete when checked with a subscriber). ``count_acks`` counts PUBACKs from
    its debug output instead, which proves every message but slows the client."""
    from wiring.services import find_binary

    binary = find_binary("mosquitto_pub") or "mosquitto_pub"
    with tempfile.TemporaryDirectory() as tmp:
        jobs: list[tuple[list[str], list[Path]]] = []
        for k, (chunk, topic) in enumerate(zip(lines, topics, strict=True)):
            files = []
            for j in range(0, len(chunk), CHUNK_LINES):
                path = Path(tmp, f"lines{k}-{j}")
                path.write_bytes(b"\n".join(chunk[j : j + CHUNK_LINES]) + b"\n")
                files.append(path)
            argv = [
                binary,
                "-h",
                broker.host,
                "-p",
                str(broker.port),
                "-u",
                USER,
                "-P",
                password,
                "-V",
                "mqttv5",
                "-q",
                "1",
                "-M",
                "100",
                "-t",
                topic,
                "-l",
            ]
            if count_acks:
                argv.append("-d")
            jobs.append((argv, files))
        start = time.perf_counter()
        with ThreadPoolExecutor(len(jobs)) as pool:
            counts = pool.map(lambda job: _publish_files(job[0], job[1], count_acks), jobs)
            acked = sum(counts)
        elapsed = time.perf_counter() - start
    return sum(len(c) for c in lines), acked, elapsed


def bench_simulate(
    seconds: Annotated[float, typer.Option(help="Length of the generator phase")] = 10.0,
    sensors: Annotated[int, typer.Option(help="Simulated sensors")] = 1000,
    connections: Annotated[int, typer.Option(help="Generator MQTT connections")] = 8,
    processes: Annotated[int, typer.Option(help="Generator worker processes")] = 2,
    max_in_flight: Annotated[int, typer.Option(help="Unacked QoS 1 per connection")] = 100,
    clients: Annotated[int, typer.Option(help="Parallel mosquitto_pub for the ceiling")] = 4,
    ceiling_messages: Annotated[int, typer.Option(help="Messages for the ceiling")] = 200_000,
    count_acks: Annotated[
        bool, typer.Option(help="Ceiling: count PUBACKs (mosquitto_pub -d; slower client)")
    ] = False,
    as_json: Annotated[bool, typer.Option("--json", help="One JSON line on stdout")] = True,
) -> None:
    """Generator rate vs broker ceiling, single-reading QoS 1 messages."""
    # imported here: the CLI starts without numpy and the MQTT client
    from gateway_sim.fleet import build_fleet
    from gateway_sim.load import LoadPlan, raise_file_limit, run_load
    from gateway_sim.payloads import Item, flat
    from gateway_sim.signals import City
    from sensornet.catalogue import load_catalogue
    from sensornet.district import load_district
    from sensornet.topics import device_topic
    from wiring.services import Mosquitto, broker_acl, ensure_binaries, free_port

    ensure_binaries()
    raise_file_limit()
    password = secrets.token_hex(8)
    with tempfile.TemporaryDirectory(prefix="sensornet-bench-") as home:
        broker = Mosquitto(
            name="mosquitto",
            home=Path(home),
            port=free_port(),
            users={USER: password},
            acl=broker_acl(PREFIX, "ingester", USER),
        )
        broker.start()
        try:
            fleet = build_fleet(load_catalogue(), load_district(), sensors, gateways=False)
            plan = LoadPlan(
                host=broker.host,
                port=broker.port,
                username=USER,
                password=password,
                prefix=PREFIX,
                rate=0.0,
                duration_s=seconds,
                connections=connections,
                max_in_flight=max_in_flight,
            )
            results, _ = run_load(plan, fleet, processes)
            acked = sum(r.acked for r in results)
            busy = max(r.elapsed_s for r in results)
            rate = acked / busy
            # the same messages: single readings of the same fleet, as the generator made them
            city = City(fleet, load_catalogue(), load_district())
            now_ms = time.time_ns() // 1_000_000
            per = ceiling_messages // clients
            lines: list[list[bytes]] = []
            topics = []
            for k in range(clients):
                idx = [(k * per + j) % len(fleet) for j in range(per)]
                values = city.readings(idx, [now_ms / 1000] * per)
                lines.append(
                    [
                        flat(Item(fleet[i].id, now_ms + j, j, v))
                        for j, (i, v) in enumerate(zip(idx, values, strict=True))
                    ]
                )
                topics.append(device_topic(PREFIX, fleet[idx[0]].id, "readings"))
            sent, ceiling_acked, elapsed = ceiling(broker, password, lines, topics, count_acks)
            top = ceiling_acked / elapsed
        finally:
            broker.stop()
    out = {
        "readings_per_s": round(rate, 1),
        "ceiling_msgs_per_s": round(top, 1),
        "ratio": round(rate / top, 3),
        "connections": sum(r.connected for r in results),
        "processes": len(results),
        "max_in_flight": max_in_flight,
        "ceiling_clients": clients,
        "acked": acked,
        "ceiling_lines": sent,
        "ceiling_counted": ceiling_acked,
        "ceiling_counts": "pubacks" if count_acks else "lines",
        "seconds": round(busy, 2),
    }
    typer.echo(json.dumps(out))
