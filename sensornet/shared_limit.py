"""A per-client rate limit that every API worker of a host shares: GCRA (the generic cell
rate algorithm, the token bucket as one number per client) in a small SQLite file.

Why: the shipped unit runs two uvicorn workers, each with its own in-memory buckets, so a
client got twice the burst (issue 23). The state must be shared between processes, and
checking it must cost next to nothing beside the query it guards. Measured and chosen
against the registry database in docs/decisions.md ("Open-data rate limit"): a file of
its own in WAL mode without fsync (losing the state in a crash only forgives a burst)
costs tens of microseconds per check; a commit to the registry database costs a disk
flush per anonymous request and contends with the registry's own writes.

GCRA keeps for each client the theoretical arrival time ``tat`` of its next request: a
request at ``now`` is allowed when ``tat - now <= (burst - 1) / rate``, and then moves
``tat`` to ``max(tat, now) + 1 / rate``; one UPSERT does both, atomically, whichever
worker runs it. A refused request changes nothing. Rows whose ``tat`` has passed are
equivalent to no row, so they are deleted now and then: the file stays small.
"""

from __future__ import annotations

import math
import sqlite3
import threading
from pathlib import Path

_SCHEMA = "CREATE TABLE IF NOT EXISTS gcra (key TEXT PRIMARY KEY, tat REAL NOT NULL) WITHOUT ROWID"
# ``limit``: a tat further ahead than any allowed request can put it (the clock went back):
# start that client afresh rather than refuse it for as long as the clock jumped
_TAKE = """
INSERT INTO gcra (key, tat) VALUES (:key, :now + :t)
ON CONFLICT (key) DO UPDATE SET tat = CASE
    WHEN tat > :now + :limit OR tat < :now THEN :now + :t ELSE tat + :t END
WHERE tat <= :now + :tau OR tat > :now + :limit
RETURNING tat
"""
_PRUNE_EVERY = 1000


class SharedRateLimiter:
    """``rate`` requests per second per key, after a burst of ``burst``; thread-safe (FastAPI
    runs a sync dependency in its thread pool), shared through ``path``."""

    def __init__(self, path: Path, rate: float, burst: int, busy_timeout_s: float = 2.0) -> None:
        if rate <= 0 or burst < 1:
            raise ValueError("a rate limit needs a positive rate and a burst of at least 1")
        self.rate, self.burst = rate, burst
        self._t = 1.0 / rate
        self._tau = (burst - 1) * self._t
        path.parent.mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(
            path, timeout=busy_timeout_s, isolation_level=None, check_same_thread=False
        )
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=OFF")  # the state may be lost, never corrupt
        self._db.execute(_SCHEMA)
        self._lock = threading.Lock()
        self._checks = 0

    def check(self, key: str, now: float) -> int:
        """0 when allowed, else whole seconds to wait (for ``Retry-After``). ``now``: wall
        clock seconds (``time.time()``), the one clock every process shares."""
        params = {"key": key, "now": now, "t": self._t, "tau": self._tau}
        params["limit"] = self._tau + self._t
        with self._lock:
            self._checks += 1
            if self._checks % _PRUNE_EVERY == 0:
                self._db.execute("DELETE FROM gcra WHERE tat < ?", (now,))
            if self._db.execute(_TAKE, params).fetchone() is not None:
                return 0
            row = self._db.execute("SELECT tat FROM gcra WHERE key = ?", (key,)).fetchone()
        wait = (row[0] - now - self._tau) if row else self._t
        return max(1, math.ceil(wait))

    def close(self) -> None:
        with self._lock:
            self._db.close()
