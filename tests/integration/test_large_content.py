"""A 256 MiB document streams in and out of a real Azurite in bounded memory.

The source is a generator-backed binary stream of unknown length (it never holds the
document), the read side hashes as it goes, and a background thread samples the process's
resident set size throughout: the peak may exceed the warmed-up baseline by < 64 MiB.
"""

from __future__ import annotations

import gc
import hashlib
import io
import struct
import threading
import time
import uuid
from collections.abc import Iterator

import psutil
import pytest

from mizaic_processor import Actor, ControllerScope, NHSNumber, Processor

MiB = 1024 * 1024
SIZE = 256 * MiB
BLOCK = MiB
LIMIT = 64 * MiB
BASE = hashlib.shake_256(b"mizaic large content test").digest(BLOCK)


def block(index: int) -> bytes:
    """The index-th 1 MiB block: a fixed pseudo-random block stamped with its index."""
    return struct.pack(">Q", index) + BASE[8:]


def blocks(size: int) -> Iterator[bytes]:
    full, rest = divmod(size, BLOCK)
    for i in range(full):
        yield block(i)
    if rest:
        yield block(full)[:rest]


def expected_sha256(size: int) -> str:
    digest = hashlib.sha256()
    for piece in blocks(size):
        digest.update(piece)
    return digest.hexdigest()


class GeneratedStream(io.RawIOBase):
    """``size`` deterministic bytes, produced on demand; not seekable, length unknown."""

    def __init__(self, size: int) -> None:
        super().__init__()
        self._blocks = blocks(size)
        self._current = memoryview(b"")
        self.produced = 0

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: bytearray | memoryview) -> int:  # type: ignore[override]
        if not self._current:
            nxt = next(self._blocks, None)
            if nxt is None:
                return 0
            self._current = memoryview(nxt)
        n = min(len(buffer), len(self._current))
        buffer[:n] = self._current[:n]
        self._current = self._current[n:]
        self.produced += n
        return n


class PeakRSS:
    """Samples this process's RSS every few milliseconds in a background thread."""

    def __init__(self, interval: float = 0.005) -> None:
        self._process = psutil.Process()
        self._interval = interval
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self.peak = 0
        self.samples = 0

    def _run(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, self._process.memory_info().rss)
            self.samples += 1
            time.sleep(self._interval)

    def __enter__(self) -> PeakRSS:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, self._process.memory_info().rss)


def round_trip(scope: ControllerScope, size: int) -> tuple[str, str, int]:
    """Stream ``size`` bytes in and out; return (sha256 read back, recorded sha256, length)."""
    source = GeneratedStream(size)
    ref = scope.create_record(
        NHSNumber("9434765919"), category="adult", content=source, content_type="image/tiff"
    )
    assert source.produced == size
    digest = hashlib.sha256()
    length = 0
    with scope.open_content(ref.record_id) as reader:
        for piece in reader:
            digest.update(piece)
            length += len(piece)
        assert reader.verified
    record = scope.get_record(ref.record_id, fields=[])
    assert record.content is not None
    assert record.content.length == length
    return digest.hexdigest(), record.content.sha256, length


def settle() -> int:
    gc.collect()
    time.sleep(0.2)
    return psutil.Process().memory_info().rss


def test_the_generated_stream_is_deterministic_and_does_not_repeat_blocks() -> None:
    stream = GeneratedStream(3 * BLOCK + 5)
    data = stream.read()
    assert len(data) == 3 * BLOCK + 5
    assert data == b"".join(blocks(3 * BLOCK + 5))
    assert data[:BLOCK] != data[BLOCK : 2 * BLOCK]
    assert hashlib.sha256(data).hexdigest() == expected_sha256(3 * BLOCK + 5)


def test_the_rss_sampler_sees_a_large_allocation() -> None:
    baseline = settle()
    with PeakRSS() as rss:
        hog = bytearray(96 * MiB)
        for i in range(0, len(hog), 4096):  # touch every page
            hog[i] = 1
        time.sleep(0.05)
        del hog
    assert rss.peak - baseline > LIMIT


@pytest.mark.slow
def test_a_256_mib_document_streams_in_and_out_in_bounded_memory(processor: Processor) -> None:
    cid = "t" + uuid.uuid4().hex[:10]
    processor.register_controller(cid, name="Test Trust", actor=Actor.processor_operator("ops"))
    scope = processor.tenant(cid, actor=Actor.service("svc-edms"))

    # Warm up: connection pool, SDK code paths, keys, allocator arenas.
    got, recorded, length = round_trip(scope, 9 * MiB + 123)
    assert got == recorded == expected_sha256(9 * MiB + 123)
    want = expected_sha256(SIZE)
    baseline = settle()

    started = time.monotonic()
    with PeakRSS() as rss:
        got, recorded, length = round_trip(scope, SIZE)
    elapsed = time.monotonic() - started

    assert length == SIZE
    assert got == want
    assert recorded == want
    assert rss.samples > 100
    growth = rss.peak - baseline
    assert growth < LIMIT, f"peak RSS grew by {growth / MiB:.1f} MiB in {elapsed:.1f} s"
    assert elapsed < 100, f"took {elapsed:.1f} s"


