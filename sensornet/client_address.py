"""Who a request comes from, for per-client limits: the connection's peer, or what the
reverse proxies it trusts say in ``X-Forwarded-For`` — only those.

Why: uvicorn believes ``X-Forwarded-For`` from 127.0.0.1 by default, so any client on the
API's host (or a proxy that passes the header through) could name a fresh address on
every request and never meet the open-data limit. Here the header counts only when the
peer is a configured proxy (``SENSORNET_API_TRUSTED_PROXIES``, default none), and then
only as far as it is vouched for: walking from the right, each entry added by a trusted
proxy is believed until the first address that is not a trusted proxy, which is the
client (entries left of it are the client's own claims, never read)."""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Sequence

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


def trusted_networks(entries: Iterable[str]) -> tuple[Network, ...]:
    """``127.0.0.1``, ``10.0.0.0/8``, ``::1``...; raises ``ValueError`` naming a bad one."""
    out = []
    for entry in entries:
        try:
            out.append(ipaddress.ip_network(entry.strip(), strict=False))
        except ValueError as exc:
            raise ValueError(f"trusted proxy {entry!r} is not an address or network") from exc
    return tuple(out)


def _trusted(address: str, trusted: Sequence[Network]) -> bool:
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return False
    return any(ip in net for net in trusted)


def client_address(
    peer: str | None, forwarded_for: Sequence[str], trusted: Sequence[Network]
) -> str:
    """The client's address for a request from ``peer`` carrying the ``X-Forwarded-For``
    header values ``forwarded_for`` (several headers are one list, in order)."""
    client = peer or "unknown"
    if not trusted or not _trusted(client, trusted):
        return client
    hops = [h.strip() for value in forwarded_for for h in value.split(",") if h.strip()]
    for hop in reversed(hops):
        try:
            ipaddress.ip_address(hop)
        except ValueError:
            return client  # a trusted proxy would not write this: the proxy is the client
        client = hop
        if not _trusted(hop, trusted):
            return hop
    return client
