"""API key → principal, remembered for a few seconds; refused keys remembered too; last
use recorded in batches.

Every data request authenticates; looking the key up in SQL each time cost a registry
round trip per request (through aiosqlite's thread on SQLite), more than InfluxDB needs
for a small query. So, by digest (never the secret):

- **Live keys** are remembered for ``ttl_s`` (``SENSORNET_API_KEY_CACHE_S``; 0 turns the
  cache off), at most ``max_entries``. A key revoked through this API process is forgotten
  at once (``forget``); revoked elsewhere (``sensornet keys revoke``, another API worker)
  it stops working within ``ttl_s``. Expiry is checked on every request, cached or not.
- **Refused keys** (unknown, revoked or expired) are remembered for ``refused_ttl_s``
  (``SENSORNET_API_KEY_REFUSED_CACHE_S``), at most ``max_entries``, the oldest dropped
  first, so a client retrying a wrong key costs one SQL lookup per that time, not one per
  request. None of those three can become valid again, and a new key has a fresh random
  secret whose digest no one can have presented before; a key created through this API
  is also dropped from this cache (``created``). So the TTL only bounds the memory, and
  the lag of one case: a key row restored into the database from a backup is accepted
  after at most ``refused_ttl_s``.
- **Last use** is noted in memory per request (``used``) and written by ``record_uses``
  every ``SENSORNET_API_KEY_LAST_USED_S`` (and at shutdown): at most one UPDATE per key
  and period, off the request path. A crash loses at most that period's notes.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import OrderedDict
from collections.abc import AsyncIterator
from datetime import datetime

from sqlalchemy.ext.asyncio import AsyncEngine

from sensornet.registry.keys import KEY_PREFIX, Principal, hash_key, principal_of, record_last_use
from sensornet.registry.models import utcnow

log = logging.getLogger(__name__)


class KeyCache:
    def __init__(
        self,
        engine: AsyncEngine,
        ttl_s: float,
        refused_ttl_s: float = 30.0,
        max_entries: int = 10_000,
    ) -> None:
        self._engine, self._ttl_s, self._refused_ttl_s = engine, ttl_s, refused_ttl_s
        self._max = max_entries
        self._live: dict[str, tuple[float, Principal]] = {}
        #: digest → (when, the expired key's principal or None for unknown/revoked)
        self._refused: OrderedDict[str, tuple[float, Principal | None]] = OrderedDict()
        self._used: dict[str, datetime] = {}

    async def principal(self, secret: str) -> Principal | None:
        """The key's principal (maybe expired: the caller checks, to say so), or None for
        an unknown or revoked key."""
        if not secret.startswith(KEY_PREFIX):
            return None
        digest = hash_key(secret)
        now = time.monotonic()
        hit = self._live.get(digest)
        if hit is not None and now - hit[0] < self._ttl_s:
            return hit[1]
        refused = self._refused.get(digest)
        if refused is not None and now - refused[0] < self._refused_ttl_s:
            return refused[1]
        found = await principal_of(self._engine, digest)
        self._live.pop(digest, None)
        self._refused.pop(digest, None)
        if found is None or found.expired(utcnow()):
            if self._refused_ttl_s > 0:
                if len(self._refused) >= self._max:
                    self._refused.popitem(last=False)
                self._refused[digest] = (now, found)
        elif self._ttl_s > 0:
            if len(self._live) >= self._max:
                self._live.clear()
            self._live[digest] = (now, found)
        return found

    def forget(self, key_id: str) -> None:
        """Drop a key at once (it was just revoked here)."""
        for digest in [d for d, (_, p) in self._live.items() if p.key_id == key_id]:
            del self._live[digest]

    def created(self, secret: str) -> None:
        """A key was just created here: it is not refused, whatever was presented before."""
        self._refused.pop(hash_key(secret), None)

    def used(self, who: Principal) -> None:
        """Note a successful authentication (a dict write; ``record_uses`` stores it)."""
        self._used[who.key_id] = utcnow()

    async def flush_uses(self) -> None:
        """Write the noted last uses (one UPDATE per key) and start noting afresh."""
        used, self._used = self._used, {}
        try:
            await record_last_use(self._engine, used)
        except Exception:  # the registry is down: keep the notes for the next round
            log.warning("could not record API key last use; retrying later", exc_info=True)
            for key_id, at in used.items():
                self._used.setdefault(key_id, at)

    @contextlib.asynccontextmanager
    async def record_uses(self, period_s: float) -> AsyncIterator[None]:
        """Flush last uses every ``period_s`` while open, and once more on exit."""

        async def every_period() -> None:
            while True:
                await asyncio.sleep(period_s)
                await self.flush_uses()

        task = asyncio.create_task(every_period())
        try:
            yield
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
            await self.flush_uses()
