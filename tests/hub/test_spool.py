"""The spool on a real file system: append+fsync, seal, recovery after a crash, removal, max_bytes."""

from __future__ import annotations

from typing import TYPE_CHECKING

from hub.spool import Spool

if TYPE_CHECKING:
    from pathlib import Path

MiB = 1 << 20


def test_append_seal_read_remove(tmp_path: Path) -> None:
    spool = Spool(tmp_path, MiB)
    assert spool.recover() == []
    spool.append(b"a v=1 1\n", 1)
    spool.append(b"b v=2 2\nc v=3 3\n", 2)
    assert spool.open_points == 3
    segment = spool.seal()
    assert segment is not None
    assert segment.points == 3
    assert segment.path.suffix == ".seg"
    assert spool.read(segment) == b"a v=1 1\nb v=2 2\nc v=3 3\n"
    assert spool.used_bytes == segment.size == segment.path.stat().st_size
    spool.remove(segment)
    assert spool.used_bytes == 0
    assert spool.segments == 0
    assert list(tmp_path.iterdir()) == []


def test_seal_with_nothing_open_is_none(tmp_path: Path) -> None:
    spool = Spool(tmp_path, MiB)
    spool.recover()
    assert spool.seal() is None


def test_recover_seals_an_open_segment_and_keeps_order(tmp_path: Path) -> None:
    first = Spool(tmp_path, MiB)
    first.recover()
    first.append(b"a v=1 1\n", 1)
    first.seal()
    first.append(b"b v=2 2\n", 1)  # left open, as by a crash (no seal, no close)
    second = Spool(tmp_path, MiB)
    segments = second.recover()
    assert [second.read(s) for s in segments] == [b"a v=1 1\n", b"b v=2 2\n"]
    assert [s.points for s in segments] == [1, 1]
    assert second.used_bytes == sum(s.size for s in segments)
    second.append(b"c v=3 3\n", 1)
    third = second.seal()
    assert third is not None
    assert third.id > segments[-1].id  # new data sorts after the backlog


def test_recover_cuts_a_torn_tail(tmp_path: Path) -> None:
    spool = Spool(tmp_path, MiB)
    spool.recover()
    spool.append(b"a v=1 1\n", 1)
    spool.append(b"b v=2 2\n", 1)
    spool.seal()
    path = next(tmp_path.glob("*.seg"))
    data = path.read_bytes()
    path.with_suffix(".open").write_bytes(data[:-3])  # a power cut in the middle of the second frame
    path.unlink()
    again = Spool(tmp_path, MiB)
    (segment,) = again.recover()
    assert again.read(segment) == b"a v=1 1\n"
    assert segment.points == 1


def test_an_open_segment_with_nothing_valid_is_dropped(tmp_path: Path) -> None:
    (tmp_path / f"{7:016d}.open").write_bytes(b"\x00\x00")
    spool = Spool(tmp_path, MiB)
    assert spool.recover() == []
    assert list(tmp_path.iterdir()) == []


def test_corrupt_sealed_segment_yields_its_good_prefix(tmp_path: Path, caplog: object) -> None:
    spool = Spool(tmp_path, MiB)
    spool.recover()
    spool.append(b"a v=1 1\n", 1)
    spool.append(b"b v=2 2\n", 1)
    segment = spool.seal()
    assert segment is not None
    data = bytearray(segment.path.read_bytes())
    data[-2] ^= 0xFF  # a flipped bit in the second frame
    segment.path.write_bytes(bytes(data))
    assert spool.read(segment) == b"a v=1 1\n"


def test_full_at_max_bytes(tmp_path: Path) -> None:
    spool = Spool(tmp_path, MiB)
    spool.recover()
    line = b"x" * 1000 + b"\n"
    while not spool.full:
        spool.append(line * 100, 100)
    assert spool.used_bytes >= MiB
    assert spool.fill >= 1.0
    segment = spool.seal()
    assert segment is not None
    spool.remove(segment)
    assert not spool.full
