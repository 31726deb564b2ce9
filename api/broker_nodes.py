"""The scaled shape's broker nodes for ``/platform/health``: asked of the RabbitMQ
management API (``SENSORNET_RABBITMQ_MANAGEMENT_URLS``), the first node that answers
speaks for the cluster, so one node down still shows every node, that one not running."""

from __future__ import annotations

import logging
from typing import Any
from urllib.parse import urlsplit

import httpx

log = logging.getLogger(__name__)

FIELDS = ("mem_used", "fd_used", "sockets_used", "uptime")


def summarise(nodes: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [
        {"name": n.get("name"), "running": bool(n.get("running")), **{k: n.get(k) for k in FIELDS}}
        for n in sorted(nodes, key=lambda n: str(n.get("name")))
    ]


async def broker_nodes(urls: str, timeout_s: float = 2.0) -> list[dict[str, Any]] | None:
    """Every node as the cluster sees it; ``None`` when no shape with nodes is configured,
    ``[]`` when none answered (the health says so rather than failing)."""
    targets = [u.strip() for u in urls.split(",") if u.strip()]
    if not targets:
        return None
    async with httpx.AsyncClient(timeout=timeout_s) as client:
        for url in targets:
            parts = urlsplit(url)
            base = f"{parts.scheme}://{parts.hostname}:{parts.port}"
            auth = (parts.username or "", parts.password or "")
            try:
                r = await client.get(f"{base}/api/nodes", auth=auth)
                r.raise_for_status()
                return summarise(r.json())
            except (httpx.HTTPError, ValueError) as exc:
                log.warning("broker node %s did not answer: %r", base, exc)
    return []
