"""Local disk spool: batches InfluxDB could not take, fsync'd before they are acked.

One file per batch (line protocol, as it would have been written), named by a growing
sequence number so replay is oldest first. A file is written to a temporary name, fsync'd,
renamed, and the directory fsync'd: after ``append`` returns, a crash or power cut cannot
lose it. Bounded by size: ``SpoolFullError`` makes the ingester stop acknowledging, so the
broker keeps the readings instead.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from sensornet.errors import SensornetError


class SpoolFullError(SensornetError):
    """The spool reached its size limit; readings stay unacknowledged in the broker."""


@dataclass(frozen=True, slots=True)
class Segment:
    path: Path
    lines: int
    size: int


class Spool:
    def __init__(self, directory: Path, max_bytes: int, warn_fraction: float = 0.8) -> None:
        self.directory = directory
        self.max_bytes = max_bytes
        self.warn_fraction = warn_fraction
        directory.mkdir(parents=True, exist_ok=True)
        for leftover in directory.glob("*.tmp"):
            leftover.unlink()  # never renamed, so never acknowledged
        self._segments = [self._segment(p) for p in sorted(directory.glob("*.lp"))]
        self._next = int(self._segments[-1].path.stem) + 1 if self._segments else 0
        self.bytes = sum(s.size for s in self._segments)
        self.lines = sum(s.lines for s in self._segments)

    @staticmethod
    def _segment(path: Path) -> Segment:
        data = path.read_bytes()
        return Segment(path, data.count(b"\n"), len(data))

    @property
    def near_full(self) -> bool:
        return self.bytes >= self.warn_fraction * self.max_bytes

    def __len__(self) -> int:
        return len(self._segments)

    def append(self, body: bytes) -> None:
        if self.bytes + len(body) > self.max_bytes:
            raise SpoolFullError(
                f"spool {self.directory} full ({self.bytes} of {self.max_bytes} bytes); "
                "raise SENSORNET_SPOOL_MAX_BYTES or restore InfluxDB"
            )
        final = self.directory / f"{self._next:012d}.lp"
        tmp = final.with_suffix(".tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        try:
            os.write(fd, body)
            os.fsync(fd)
        finally:
            os.close(fd)
        os.rename(tmp, final)
        dir_fd = os.open(self.directory, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)
        self._next += 1
        segment = Segment(final, body.count(b"\n"), len(body))
        self._segments.append(segment)
        self.bytes += segment.size
        self.lines += segment.lines

    def oldest(self) -> tuple[Segment, bytes] | None:
        if not self._segments:
            return None
        segment = self._segments[0]
        return segment, segment.path.read_bytes()

    def remove(self, segment: Segment) -> None:
        """Drop a segment once InfluxDB holds its lines."""
        segment.path.unlink(missing_ok=True)
        self._segments.remove(segment)
        self.bytes -= segment.size
        self.lines -= segment.lines
