"""The disk spool on a real filesystem: order, bounds, and what survives a crash."""

from __future__ import annotations

from pathlib import Path

import pytest

from ingest.spool import Spool, SpoolFullError


def test_segments_replay_oldest_first_and_survive_reopen(tmp_path: Path) -> None:
    spool = Spool(tmp_path, max_bytes=10_000)
    spool.append(b"a 1\nb 2\n")
    spool.append(b"c 3\n")
    assert (len(spool), spool.lines, spool.bytes) == (2, 3, 12)
    reopened = Spool(tmp_path, max_bytes=10_000)  # e.g. after a crash and restart
    first = reopened.oldest()
    assert first is not None and first[1] == b"a 1\nb 2\n"
    reopened.remove(first[0])
    second = reopened.oldest()
    assert second is not None and second[1] == b"c 3\n"
    reopened.append(b"d 4\n")  # numbering continues after the survivors
    reopened.remove(second[0])
    third = reopened.oldest()
    assert third is not None and third[1] == b"d 4\n"


def test_full_spool_refuses_and_changes_nothing(tmp_path: Path) -> None:
    spool = Spool(tmp_path, max_bytes=10, warn_fraction=0.5)
    spool.append(b"12345\n")
    assert spool.near_full
    with pytest.raises(SpoolFullError, match="SENSORNET_SPOOL_MAX_BYTES"):
        spool.append(b"123456\n")
    assert (len(spool), spool.bytes) == (1, 6)


def test_unfinished_temporary_files_are_discarded(tmp_path: Path) -> None:
    (tmp_path / "000000000007.tmp").write_bytes(b"half written, never acked")
    spool = Spool(tmp_path, max_bytes=1000)
    assert len(spool) == 0 and not list(tmp_path.glob("*.tmp"))
