"""Loss accounting from a device's ``seq`` numbers: epochs, wraps, duplicates, missing.

Pure arithmetic over the rows of one device and one time window (the I/O is in
``sensornet.accounting``). docs/accounting.md states the rules; in short:

- Rows are taken in time order: a stored reading at the device's own timestamp (its
  arrival time when it sent none), a refused reading (dead letter) at the time the
  ingester refused it, which can be later than where its ``seq`` belongs.
- An *epoch* is a run in which the device's counter counts up. Within one, each ``seq``
  counts once (a redelivered reading is a duplicate, not a second reading), and
  ``missing`` = (highest - lowest + 1) - distinct.
- A ``seq`` up to ``tolerance`` below the count is out of order, not a restart.
- A counter that drops to near 0 just below 2^16 or 2^32 wrapped: counting goes on
  modulo (``wrap_window``: at most that many lost across the wrap).
- A bigger drop is a restart (reboot) unless one of the next ``lookahead`` stored readings
  comes back to the count: then the row was a straggler (a late redelivery, or a dead
  letter stamped later than its reading) and counts in the epoch whose range holds it, or
  as ``unplaced`` when none does. Losses between the last reading before a restart and the
  first after it cannot be known, nor those before the first reading of the window.
- A refused reading never moves an epoch's count when the epoch has stored readings (its
  timestamp is when it was refused); far ahead of the count it belongs to an earlier epoch
  whose range holds it, if one does.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Literal

#: widths real counters wrap at (uint16, uint32); a wider counter never wraps in practice
MODULI = (2**16, 2**32)
REORDER_TOLERANCE = 32
WRAP_WINDOW = 1024
LOOKAHEAD = 32
LATE_EPOCHS = 4  # how many epochs back a straggler is looked for


@dataclass(frozen=True, slots=True)
class SeqRow:
    """One reading of the device that carried a ``seq``; ``refused``: a dead letter."""

    time_ns: int
    seq: int
    refused: bool = False


@dataclass(frozen=True, slots=True)
class Epoch:
    """One run of the device's counter. ``began``: ``window`` for the first (what came
    before the window is not counted), ``reset`` after a restart (what was lost between
    the restart and the first reading after it cannot be known)."""

    began: Literal["window", "reset"]
    first_seq: int
    last_seq: int
    first_ns: int
    last_ns: int
    rows: int
    distinct: int
    span: int
    wraps: int
    modulus: int | None

    @property
    def missing(self) -> int:
        return self.span - self.distinct

    @property
    def duplicates(self) -> int:
        return self.rows - self.distinct

    def as_dict(self) -> dict[str, object]:
        return {
            "began": self.began,
            "first_seq": self.first_seq,
            "last_seq": self.last_seq,
            "first_ns": self.first_ns,
            "last_ns": self.last_ns,
            "received": self.rows,
            "distinct": self.distinct,
            "missing": self.missing,
            "duplicates": self.duplicates,
            "wraps": self.wraps,
            "counter_bits": None if self.modulus is None else self.modulus.bit_length() - 1,
        }


@dataclass(frozen=True, slots=True)
class SeqAccount:
    epochs: tuple[Epoch, ...] = ()
    unplaced: int = 0  # stragglers that fall in no epoch's range: received, not placed

    @property
    def missing(self) -> int:
        return sum(e.missing for e in self.epochs)

    @property
    def duplicates(self) -> int:
        return sum(e.duplicates for e in self.epochs)

    @property
    def distinct(self) -> int:
        return sum(e.distinct for e in self.epochs)

    @property
    def resets(self) -> int:
        return max(0, len(self.epochs) - 1)

    @property
    def wraps(self) -> int:
        return sum(e.wraps for e in self.epochs)


@dataclass(slots=True)
class _Run:
    """An epoch being built. Positions are unwrapped: ``k * modulus + seq``."""

    began: Literal["window", "reset"]
    low: int
    high: int
    first_ns: int
    last_ns: int
    frontier: int | None  # highest position of a stored reading: where the count is
    modulus: int | None = None
    rows: int = 0
    seen: set[int] = field(default_factory=set)

    @property
    def count_at(self) -> int:
        return self.high if self.frontier is None else self.frontier

    def position(self, seq: int) -> int:
        """The unwrapped position of ``seq`` nearest the count."""
        if self.modulus is None:
            return seq
        m, here = self.modulus, self.count_at
        u = here - here % m + seq
        if u - here > m // 2 and u >= m:
            return u - m
        if here - u > m // 2:
            return u + m
        return u

    def step(self, seq: int, tolerance: int, wrap_window: int) -> tuple[int, int | None] | None:
        """(position, modulus) if ``seq`` continues the count: ahead, a little behind, or
        just past a wrap; None for a drop."""
        if self.modulus is not None and seq >= self.modulus:
            return None  # not the counter width guessed at a wrap
        u = self.position(seq)
        if u >= self.count_at - tolerance:
            return u, self.modulus
        if self.modulus is None:
            for m in MODULI:
                if self.count_at < m and (m - 1 - self.count_at) + seq < wrap_window:
                    return m + seq, m
        return None

    def covers(self, seq: int) -> int | None:
        """The position of ``seq`` inside ``[low, high]``, if it has one."""
        if self.modulus is None:
            return seq if self.low <= seq <= self.high else None
        m = self.modulus
        if seq >= m:
            return None
        for k in range(self.high // m, self.low // m - 1, -1):
            u = k * m + seq
            if self.low <= u <= self.high:
                return u
        return None

    def add(self, u: int, row: SeqRow, modulus: int | None = None) -> None:
        if modulus is not None:
            self.modulus = modulus
        if u < self.low:
            self.low = u
        elif u > self.high:
            self.high = u
        if not row.refused and (self.frontier is None or u > self.frontier):
            self.frontier = u
        self.last_ns = row.time_ns  # rows come in time order
        self.rows += 1
        self.seen.add(u)

    def done(self) -> Epoch:
        m = self.modulus
        return Epoch(
            began=self.began,
            first_seq=self.low if m is None else self.low % m,
            last_seq=self.high if m is None else self.high % m,
            first_ns=self.first_ns,
            last_ns=self.last_ns,
            rows=self.rows,
            distinct=len(self.seen),
            span=self.high - self.low + 1,
            wraps=0 if m is None else self.high // m - self.low // m,
            modulus=m,
        )


def account_seqs(
    rows: Sequence[SeqRow],
    *,
    tolerance: int = REORDER_TOLERANCE,
    lookahead: int = LOOKAHEAD,
    wrap_window: int = WRAP_WINDOW,
) -> SeqAccount:
    """The epochs of one device's rows (any order; they are sorted by time here)."""
    return _Walk(rows, tolerance, lookahead, wrap_window).run()


class _Walk:
    """One pass over the rows in time order, building epochs."""

    def __init__(self, rows: Sequence[SeqRow], tolerance: int, lookahead: int, wrap: int) -> None:
        self.rows = sorted(rows, key=lambda r: (r.time_ns, r.seq, r.refused))
        self.tolerance, self.lookahead, self.wrap_window = tolerance, lookahead, wrap
        # stored readings steer the count; in a window of dead letters only, they do
        stored = [i for i, r in enumerate(self.rows) if not r.refused]
        self.letters_steer = not stored
        self.steering = stored or list(range(len(self.rows)))
        self.next_steering = 0  # index into ``steering`` of the first one after the row
        self.runs: list[_Run] = []
        self.unplaced = 0

    def run(self) -> SeqAccount:
        for i, row in enumerate(self.rows):
            while (
                self.next_steering < len(self.steering) and self.steering[self.next_steering] <= i
            ):
                self.next_steering += 1
            self._take(i, row)
        return SeqAccount(tuple(r.done() for r in self.runs), self.unplaced)

    def _ahead(self) -> list[int]:
        """Indexes of the next ``lookahead`` steering rows."""
        return self.steering[self.next_steering : self.next_steering + self.lookahead]

    def _take(self, i: int, row: SeqRow) -> None:
        current = self.runs[-1] if self.runs else None
        if current is not None:
            stepped = current.step(row.seq, self.tolerance, self.wrap_window)
            if stepped is not None:
                u, modulus = stepped
                far_ahead = u > current.count_at + self.tolerance
                if row.refused and far_ahead and self._into_earlier(row):
                    return  # a late dead letter of an earlier epoch
                current.add(u, row, modulus)
                return
            if self._count_returns(current, row.seq):
                self._straggler(row)
                return
        if row.refused and not self.letters_steer and not self._opens_count(i, row):
            self._straggler(row)  # a late dead letter must not open an epoch
            return
        began: Literal["window", "reset"] = "window" if current is None else "reset"
        self.runs.append(_Run(began, row.seq, row.seq, row.time_ns, row.time_ns, None))
        self.runs[-1].add(row.seq, row)

    def _count_returns(self, current: _Run, drop: int) -> bool:
        """Whether one of the next steering rows jumps back up to ``current``'s count from
        where ``drop`` went: then ``drop`` was a straggler. Rows that count on from the
        drop instead (a restarted counter, however close it gets) do not."""
        run_top = current.position(drop)
        for k in self._ahead():
            seq = self.rows[k].seq
            stepped = current.step(seq, self.tolerance, self.wrap_window)
            if stepped is not None and stepped[0] - run_top > self.tolerance:
                return True
            u = current.position(seq)
            if u >= run_top - self.tolerance:
                run_top = max(run_top, u)
        return False

    def _opens_count(self, i: int, row: SeqRow) -> bool:
        """Whether dead letter ``row`` (index ``i``) counts up to the next stored reading,
        the rows between them in between (readings refused as a sensor starts up)."""
        ahead = self._ahead()
        if not ahead:
            return False  # stored readings are all behind it: it is late, not a restart
        j = ahead[0]
        return -self.tolerance <= self.rows[j].seq - row.seq <= (j - i) + self.tolerance

    def _straggler(self, row: SeqRow) -> None:
        if not self._into_earlier(row, include_current=True):
            self.unplaced += 1

    def _into_earlier(self, row: SeqRow, include_current: bool = False) -> bool:
        """Count ``row`` in the latest epoch whose range holds its seq, if any of the last
        ``LATE_EPOCHS`` does (a straggler older than that is unplaced)."""
        end = len(self.runs) if include_current else len(self.runs) - 1
        for k in range(end - 1, max(end - 1 - LATE_EPOCHS, -1), -1):
            run = self.runs[k]
            u = run.covers(row.seq)
            if u is not None:
                run.add(u, row)
                return True
        return False
