"""Local disk spool: batches InfluxDB could not take, fsync'd before they are acked.

One file per batch (line protocol, as it would have been written), named by a growing
sequence number so replay is oldest first. A file is written to a temporary name, fsync'd,
renamed, and the directory fsync'd: after ``append`` returns, a crash or power cut cannot
lose it. Bounded by size: ``SpoolFullError`` makes the ingester stop acknowledging, so the
broker keeps the readings instead. An ``OSError`` (ENOSPC, EIO) from ``append`` means the
same: nothing was made durable.

A segment that does not read back as what ``append`` wrote (unreadable, invalid UTF-8, no
final newline: truncated) is moved to ``quarantine/`` and reported, never replayed: a line
cut short can still parse, as a wrong value (``t=21.5`` cut to ``t=21``). Replay goes on
with the next segment.
"""

from __future__ import annotations

import logging
import os
import re
import time
from dataclasses import dataclass
from pathlib import Path

from sensornet.errors import SensornetError

log = logging.getLogger("sensornet.ingest")

_SEGMENT_NAME = re.compile(r"^(\d{1,18})\.lp$")
QUARANTINE = "quarantine"


class SpoolFullError(SensornetError):
    """The spool reached its size limit; readings stay unacknowledged in the broker."""


class SpoolCorruptError(SensornetError):
    """A segment failed to read back; it is in quarantine (or gone), not replayed."""

    def __init__(self, message: str, lines: int) -> None:
        super().__init__(message)
        self.lines = lines  # readings it held, by its newline count when indexed


@dataclass(frozen=True, slots=True)
class Segment:
    path: Path
    lines: int
    size: int


def decode_segment(body: bytes) -> list[str]:
    """The lines of a segment, split on "\\n" only (\\r, \\x1c, \\u2028 and the like are
    legal inside line-protocol string fields); ``ValueError`` when it is not what
    ``append`` writes: UTF-8 lines, each ending in a newline."""
    if not body:
        raise ValueError("empty")
    if not body.endswith(b"\n"):
        raise ValueError("truncated: the last line has no newline")
    text = body.decode("utf-8")  # UnicodeDecodeError is a ValueError
    return [line for line in text.split("\n") if line]


def _write_all(fd: int, data: bytes) -> None:
    """``os.write`` may write less than asked (a full disk, a signal): loop until done."""
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]


def _fsync_dir(directory: Path) -> None:
    dir_fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


class Spool:
    def __init__(self, directory: Path, max_bytes: int, warn_fraction: float = 0.8) -> None:
        self.directory = directory
        self.max_bytes = max_bytes
        self.warn_fraction = warn_fraction
        directory.mkdir(parents=True, exist_ok=True)
        numbered: list[tuple[int, Path]] = []
        for path in directory.iterdir():
            if path.suffix == ".tmp" and not path.is_dir():
                path.unlink(missing_ok=True)  # never renamed, so never acknowledged
            elif match := _SEGMENT_NAME.match(path.name):
                numbered.append((int(match[1]), path))
            elif path.name != QUARANTINE:
                log.warning("spool %s: ignoring %s, not a name the spool writes", directory, path)
        numbered.sort()
        self._segments = [self._segment(p) for _, p in numbered]
        self._next = numbered[-1][0] + 1 if numbered else 0
        self.bytes = sum(s.size for s in self._segments)
        self.lines = sum(s.lines for s in self._segments)

    @staticmethod
    def _segment(path: Path) -> Segment:
        try:
            data = path.read_bytes()
        except OSError:  # unreadable: indexed all the same, quarantined when replayed
            return Segment(path, 0, 0)
        return Segment(path, data.count(b"\n"), len(data))

    @property
    def near_full(self) -> bool:
        return self.bytes >= self.warn_fraction * self.max_bytes

    def __len__(self) -> int:
        return len(self._segments)

    def append(self, body: bytes) -> None:
        """Durable when it returns; raises ``SpoolFullError`` or ``OSError`` when not. A
        failed attempt (ENOSPC, EIO) removes what it wrote: no empty or partial temporary
        file is left to fill a full disk further or puzzle an operator (issue 23)."""
        if self.bytes + len(body) > self.max_bytes:
            raise SpoolFullError(
                f"spool {self.directory} full ({self.bytes} of {self.max_bytes} bytes); "
                "raise SENSORNET_SPOOL_MAX_BYTES or restore InfluxDB"
            )
        final = self.directory / f"{self._next:012d}.lp"
        tmp = final.with_suffix(".tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        renamed = False
        try:
            try:
                _write_all(fd, body)
                os.fsync(fd)
            finally:
                os.close(fd)
            os.rename(tmp, final)
            renamed = True
            _fsync_dir(self.directory)
        except BaseException:
            # not durable, so not acknowledged: the broker keeps the readings; what was
            # written goes (a renamed file too: its name would be reused by the next try)
            (final if renamed else tmp).unlink(missing_ok=True)
            raise
        self._next += 1
        segment = Segment(final, body.count(b"\n"), len(body))
        self._segments.append(segment)
        self.bytes += segment.size
        self.lines += segment.lines

    def oldest(self) -> tuple[Segment, list[str]] | None:
        """The oldest segment and its lines; ``SpoolCorruptError`` when it does not read
        back, after moving it to quarantine (the next call gives the one after it)."""
        if not self._segments:
            return None
        segment = self._segments[0]
        try:
            return segment, decode_segment(segment.path.read_bytes())
        except (OSError, ValueError) as exc:
            problem = f"{exc.__class__.__name__}: {exc}"
        where = self._quarantine(segment)
        raise SpoolCorruptError(
            f"spool segment {segment.path.name} does not read back ({problem}); "
            f"its {segment.lines} lines are not replayed: {where}",
            segment.lines,
        )

    def _quarantine(self, segment: Segment) -> str:
        """Out of the replay order, kept for an operator: says where it went."""
        self._forget(segment)
        folder = self.directory / QUARANTINE
        target = folder / f"{segment.path.stem}-{time.time_ns()}.lp"
        try:
            folder.mkdir(exist_ok=True)
            os.rename(segment.path, target)
            _fsync_dir(folder)
            _fsync_dir(self.directory)
        except FileNotFoundError:
            return "the file is gone"
        except OSError as exc:
            return f"it could not be moved to {folder} ({exc}); left in place, skipped"
        return f"moved to {target}"

    def remove(self, segment: Segment) -> None:
        """Drop a segment once InfluxDB holds its lines."""
        segment.path.unlink(missing_ok=True)
        self._forget(segment)

    def _forget(self, segment: Segment) -> None:
        self._segments.remove(segment)
        self.bytes -= segment.size
        self.lines -= segment.lines
