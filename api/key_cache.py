"""API key → principal, remembered for a few seconds.

Every data request authenticates; looking the key up in SQL each time cost a registry
round trip per request (through aiosqlite's thread on SQLite), more than InfluxDB needs
for a small query. Only live keys are remembered, by digest (never the secret), at most
``max_entries`` of them. A key revoked through this API process is forgotten at once
(``forget``); revoked elsewhere (``sensornet keys revoke``, another API worker) it stops
working within ``ttl_s`` (``SENSORNET_API_KEY_CACHE_S``; 0 turns the cache off).
"""

from __future__ import annotations

import time

from sqlalchemy.ext.asyncio import AsyncEngine

from sensornet.registry.keys import KEY_PREFIX, Principal, hash_key, principal_of


class KeyCache:
    def __init__(self, engine: AsyncEngine, ttl_s: float, max_entries: int = 10_000) -> None:
        self._engine, self._ttl_s, self._max = engine, ttl_s, max_entries
        self._live: dict[str, tuple[float, Principal]] = {}

    async def principal(self, secret: str) -> Principal | None:
        """The caller's principal, or None for an unknown or revoked key."""
        if not secret.startswith(KEY_PREFIX):
            return None
        digest = hash_key(secret)
        hit = self._live.get(digest)
        now = time.monotonic()
        if hit is not None and now - hit[0] < self._ttl_s:
            return hit[1]
        found = await principal_of(self._engine, digest)
        if found is None:
            self._live.pop(digest, None)
        elif self._ttl_s > 0:
            if len(self._live) >= self._max:
                self._live.clear()
            self._live[digest] = (now, found)
        return found

    def forget(self, key_id: str) -> None:
        """Drop a key at once (it was just revoked here)."""
        for digest in [d for d, (_, p) in self._live.items() if p.key_id == key_id]:
            del self._live[digest]
