"""The disk spool on a real filesystem: order, bounds, what survives a crash, and what
happens to segments that do not read back."""

from __future__ import annotations

import contextlib
import errno
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from ingest.spool import QUARANTINE, Spool, SpoolCorruptError, SpoolFullError, decode_segment


def test_segments_replay_oldest_first_and_survive_reopen(tmp_path: Path) -> None:
    spool = Spool(tmp_path, max_bytes=10_000)
    spool.append(b"a 1\nb 2\n")
    spool.append(b"c 3\n")
    assert (len(spool), spool.lines, spool.bytes) == (2, 3, 12)
    reopened = Spool(tmp_path, max_bytes=10_000)  # e.g. after a crash and restart
    first = reopened.oldest()
    assert first is not None and first[1] == ["a 1", "b 2"]
    reopened.remove(first[0])
    second = reopened.oldest()
    assert second is not None and second[1] == ["c 3"]
    reopened.append(b"d 4\n")  # numbering continues after the survivors
    reopened.remove(second[0])
    third = reopened.oldest()
    assert third is not None and third[1] == ["d 4"]


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


def test_lines_split_on_newline_only(tmp_path: Path) -> None:
    """\\r, \\x0b, \\x1c, \\x85 and \\u2028 are legal in line-protocol string fields;
    ``str.splitlines`` cut a line at each of them."""
    line = 'm,k=v s="a\rb\x0bc\x1cd\x85e\u2028f" 1'
    spool = Spool(tmp_path, max_bytes=10_000)
    spool.append(f"{line}\nm v=2 2\n".encode())
    item = spool.oldest()
    assert item is not None and item[1] == [line, "m v=2 2"]


@pytest.mark.parametrize(
    ("body", "problem"),
    [
        (b"m v=1 1\nm v=2", "truncated"),
        (b'm v=1 1\nm s="\xff\xfe" 2\n', "utf-8"),
        (b"", "empty"),
    ],
)
def test_a_segment_that_does_not_read_back_is_named(body: bytes, problem: str) -> None:
    with pytest.raises(ValueError, match=problem):
        decode_segment(body)


def test_truncated_and_corrupt_segments_are_quarantined_and_the_rest_replays(
    tmp_path: Path,
) -> None:
    """As a crash on a disk that lies about fsync, or a bad sector, would leave them."""
    (tmp_path / "000000000001.lp").write_bytes(b"m v=1 1\n")
    (tmp_path / "000000000002.lp").write_bytes(b"m v=1 1\nm v=21")  # "m v=21.5 2" cut short
    (tmp_path / "000000000003.lp").write_bytes(b"m v=3 3\n\xff\xfe garbage\n")
    (tmp_path / "000000000004.lp").write_bytes(b"m v=4 4\n")
    spool = Spool(tmp_path, max_bytes=10_000)
    replayed: list[list[str]] = []
    quarantined: list[str] = []
    while len(spool):
        try:
            item = spool.oldest()
        except SpoolCorruptError as exc:
            quarantined.append(str(exc))
            continue
        assert item is not None
        replayed.append(item[1])
        spool.remove(item[0])
    assert replayed == [["m v=1 1"], ["m v=4 4"]]
    assert len(quarantined) == 2
    assert "000000000002.lp" in quarantined[0] and "truncated" in quarantined[0]
    assert "000000000003.lp" in quarantined[1] and "UnicodeDecodeError" in quarantined[1]
    kept = sorted(p.read_bytes() for p in (tmp_path / QUARANTINE).iterdir())
    assert kept == sorted([b"m v=1 1\nm v=21", b"m v=3 3\n\xff\xfe garbage\n"])
    assert (spool.bytes, spool.lines) == (0, 0)
    assert Spool(tmp_path, max_bytes=10_000).oldest() is None  # quarantine is not replayed


def test_unexpected_names_are_left_alone(tmp_path: Path) -> None:
    (tmp_path / "notes.lp").write_bytes(b"an operator's file\n")
    (tmp_path / "000000000005.lp.bak").write_bytes(b"m v=1 1\n")
    (tmp_path / "000000000003.lp").write_bytes(b"m v=3 3\n")
    spool = Spool(tmp_path, max_bytes=10_000)
    assert len(spool) == 1
    spool.append(b"m v=4 4\n")
    assert (tmp_path / "000000000004.lp").exists()
    assert (tmp_path / "notes.lp").exists() and (tmp_path / "000000000005.lp.bak").exists()


def test_a_full_disk_raises_and_nothing_is_indexed(tmp_path: Path) -> None:
    """ENOSPC from the kernel: /dev/full refuses every write with it."""
    spool = Spool(tmp_path, max_bytes=10_000)
    os.symlink("/dev/full", tmp_path / "000000000000.tmp")
    with pytest.raises(OSError) as raised:
        spool.append(b"m v=1 1\n")
    assert raised.value.errno == errno.ENOSPC
    assert (len(spool), spool.bytes) == (0, 0) and not list(tmp_path.glob("*.lp"))
    assert not (tmp_path / "000000000000.tmp").exists()  # the failed attempt's is removed
    spool.append(b"m v=1 1\n")  # the disk has room again: the same batch is spooled
    item = spool.oldest()
    assert item is not None and item[1] == ["m v=1 1"]


@pytest.fixture
def small_full_disk(tmp_path: Path) -> Iterator[Path]:
    """A real 64 KiB tmpfs (root mounts it; CI runs as root), filled to the last byte."""
    if os.geteuid() != 0:
        pytest.skip("mounting a tmpfs needs root (CI and the project's machines are root)")
    mount = tmp_path / "small"
    mount.mkdir()
    subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=64k,mode=700", "tmpfs", str(mount)], check=True
    )
    try:
        yield mount
    finally:
        subprocess.run(["umount", str(mount)], check=True)


def test_enospc_mid_write_leaves_no_temporary_file(small_full_disk: Path) -> None:
    spool = Spool(small_full_disk / "spool", max_bytes=10_000_000)
    filler = small_full_disk / "filler"
    fd = os.open(filler, os.O_WRONLY | os.O_CREAT, 0o600)
    try:
        with contextlib.suppress(OSError):
            while os.write(fd, b"\0" * 4096):  # until the kernel says ENOSPC
                pass
    finally:
        os.close(fd)
    body = b"m v=1 1\n" * 2048  # 16 KiB: no room for it
    with pytest.raises(OSError) as raised:
        spool.append(body)
    assert raised.value.errno == errno.ENOSPC
    assert sorted(p.name for p in spool.directory.iterdir()) == []  # no .tmp, no .lp
    assert (len(spool), spool.bytes) == (0, 0)
    filler.unlink()  # room again: the same batch is spooled and reads back
    spool.append(body)
    item = spool.oldest()
    assert item is not None and len(item[1]) == 2048
