"""Platform health: what the ingesters report (rate, lag, rejects, spool) and how many
sensors are online/stale/offline per subdistrict."""

from __future__ import annotations

import time
from collections import Counter
from typing import Any

from fastapi import APIRouter, Request

from api.broker_nodes import broker_nodes
from api.query_common import registry_view
from sensornet.catalogue import Catalogue
from sensornet.influx import InfluxClient, rows
from sensornet.latest import DEVICE_STATUS, latest_of_types
from sensornet.liveness import liveness

router = APIRouter(tags=["platform"])

# The ingesters write every 10 s; two points a few seconds apart give the rate.
INGEST_LAST_TWO = (
    'SELECT * FROM "platform_ingest" WHERE time > now() - 5m '
    'GROUP BY "ingester" ORDER BY time DESC LIMIT 2'
)
REJECTS = (
    'SELECT last("count") AS "count" FROM "platform_rejects" WHERE time > now() - 1h '
    'GROUP BY "ingester", "reason"'
)

UNKNOWN_KEYS = (
    'SELECT last("count") AS "count" FROM "platform_unknown_keys" WHERE time > now() - 1h '
    'GROUP BY "ingester", "key"'
)


def ingest_summary(series: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One entry per ingester: gauges of its last report, rates from its last two."""
    out = []
    for s in series:
        columns = s["columns"]
        points = [dict(zip(columns, v, strict=True)) for v in s.get("values", [])]
        if not points:
            continue
        last = points[0]
        rate = None
        if len(points) == 2:
            dt = (points[0]["time"] - points[1]["time"]) / 1e9
            stored = (points[0].get("stored") or 0) - (points[1].get("stored") or 0)
            rate = round(stored / dt, 3) if dt > 0 and stored >= 0 else None
        out.append(
            {
                "ingester": (s.get("tags") or {}).get("ingester"),
                "reported_at_ns": last["time"],
                "stored_per_s": rate,
                **{
                    k: last.get(k)
                    for k in (
                        "lag_ms",
                        "batch_latency_ms",
                        "spool_bytes",
                        "spool_readings",
                        "stored",
                        "rejected",
                        "write_errors",
                        "dropped_lines",
                        "unknown_keys",
                    )
                },
            }
        )
    return out


@router.get("/platform/health", summary="Ingest rate, lag, rejects, spool; liveness counts")
async def platform_health(request: Request) -> dict[str, Any]:
    influx: InfluxClient = request.app.state.influx
    catalogue: Catalogue = request.app.state.catalogue
    devices = [d for d in (await registry_view(request).devices()).values() if d.reporting]
    ingest = ingest_summary(await influx.query(INGEST_LAST_TWO))
    rejects: Counter[str] = Counter()
    for r in rows(await influx.query(REJECTS)):
        rejects[r["reason"]] += int(r["count"] or 0)
    unknown_keys: Counter[str] = Counter()  # stored readings' keys no type knows
    for r in rows(await influx.query(UNKNOWN_KEYS)):
        unknown_keys[r["key"]] += int(r["count"] or 0)
    said = {r["sensor_id"]: r["state"] for r in rows(await influx.query(DEVICE_STATUS))}
    latest = await latest_of_types(influx, catalogue, sorted({d.type for d in devices}))
    now = time.time_ns()
    per_area: dict[str, Counter[str]] = {}
    unknown_type = 0  # the registry names a type the catalogue no longer has
    for d in devices:
        if d.type not in catalogue.types:
            unknown_type += 1
            continue
        seen = latest.get(d.id)
        state = liveness(
            seen.time_ns if seen else None,
            catalogue.get(d.type).interval_s,
            now,
            said_offline=said.get(d.id) == "offline",
        )
        per_area.setdefault(d.subdistrict, Counter())[state] += 1
    states = ("online", "stale", "offline", "never")
    by_area = {a: {s: c[s] for s in states} for a, c in sorted(per_area.items())}
    total = {s: sum(c[s] for c in per_area.values()) for s in states}
    return {
        "ingesters": ingest,
        "stored_per_s": sum(i["stored_per_s"] or 0 for i in ingest),
        "max_lag_ms": max((i["lag_ms"] or 0 for i in ingest), default=None),
        "spool_readings": sum(i["spool_readings"] or 0 for i in ingest),
        "rejects_by_reason": dict(sorted(rejects.items())),
        "unknown_keys_by_key": dict(sorted(unknown_keys.items())),
        "devices": total,
        "devices_by_subdistrict": by_area,
        "devices_of_unknown_type": unknown_type,
        # the scaled shape's RabbitMQ nodes (null in the single-machine shape)
        "broker_nodes": await broker_nodes(request.app.state.settings.rabbitmq_management_urls),
    }
