"""Child process of the memory scenario: put then get one generated document, report RSS.

Run by ``bench/memory.py`` as ``python -m bench._memory_child ours|raw SIZE`` with the
Azurite connection string in ``MIZAIC_BENCH_CONN``; prints one JSON line. A fresh process
per measurement, so earlier work cannot hide or inflate the growth.

Peak RSS is sampled every 2 ms by a thread (psutil) and, on Linux, also read from the
kernel's high-water mark (``VmHWM``, reset through ``/proc/self/clear_refs``); the larger of
the two is reported.
"""

from __future__ import annotations

import contextlib
import gc
import hashlib
import io
import json
import os
import sys
import threading
import time
from typing import Any

import psutil

from ._common import EVENTS, MIB, library, new_subject, raw_service, record_fields

_PROC = psutil.Process()


class GeneratedStream(io.RawIOBase):
    """``size`` bytes of a repeating pseudo-random pattern, generated as read; not seekable."""

    def __init__(self, size: int) -> None:
        super().__init__()
        self._block = hashlib.shake_256(b"bench document").digest(MIB)
        self._remaining = size
        self._offset = 0

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        view = memoryview(buffer).cast("B")
        want = min(len(view), self._remaining)
        done = 0
        while done < want:
            take = min(want - done, len(self._block) - self._offset)
            view[done : done + take] = self._block[self._offset : self._offset + take]
            done += take
            self._offset = (self._offset + take) % len(self._block)
        self._remaining -= want
        return want


def _hwm() -> int | None:
    with contextlib.suppress(OSError, ValueError), open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    return None


def _reset_hwm() -> bool:
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
    except OSError:
        return False
    return True


class PeakRSS:
    def __init__(self, interval: float = 0.002) -> None:
        self._interval = interval
        self._stop = threading.Event()
        self.base = 0
        self.peak = 0
        self.hwm_ok = False

    def _sample(self) -> None:
        while not self._stop.is_set():
            rss = _PROC.memory_info().rss
            self.peak = max(self.peak, rss)
            time.sleep(self._interval)

    def __enter__(self) -> PeakRSS:
        gc.collect()
        self.hwm_ok = _reset_hwm()
        self.base = _PROC.memory_info().rss
        self.peak = self.base
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()
        self.started = time.perf_counter()
        return self

    def __exit__(self, *exc: object) -> None:
        self.seconds = time.perf_counter() - self.started
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, _PROC.memory_info().rss)
        hwm = _hwm() if self.hwm_ok else None
        if hwm is not None:
            self.peak = max(self.peak, hwm)

    @property
    def growth_mib(self) -> float:
        return (self.peak - self.base) / MIB


def ours(conn: str, size: int) -> dict[str, Any]:
    lib = library(conn, "mem")
    scope = lib.scope
    subject = new_subject()
    fields = record_fields(0)
    # warm-up: imports, connections, keys, audit thread (tiny content only)
    warm = scope.create_record(subject, category="adult", fields=fields, events=EVENTS,
                               content=b"warm-up", content_type="application/pdf")
    with scope.open_content(warm.record_id) as reader:
        reader.read()
    with PeakRSS() as put:
        ref = scope.create_record(
            subject, category="adult", fields=fields, events=EVENTS,
            content=GeneratedStream(size), content_type="application/octet-stream",
        )
    got = 0
    with PeakRSS() as get, scope.open_content(ref.record_id) as reader:
        for piece in reader:
            got += len(piece)
    if got != size:
        raise AssertionError("short read")
    lib.close()
    return {"put": put, "get": get}


def raw(conn: str, size: int) -> dict[str, Any]:
    service = raw_service(conn)
    container = service.get_container_client("bench-raw-memory")
    with contextlib.suppress(Exception):
        container.create_container()
    name = f"mem/{os.getpid()}"
    container.get_blob_client(name + "-warm").upload_blob(b"warm-up")
    container.download_blob(name + "-warm").readall()
    with PeakRSS() as put:
        container.get_blob_client(name).upload_blob(GeneratedStream(size), length=size)
    got = 0
    with PeakRSS() as get:
        for piece in container.download_blob(name).chunks():
            got += len(piece)
    if got != size:
        raise AssertionError("short read")
    container.delete_blob(name)
    service.close()
    return {"put": put, "get": get}


def main() -> int:
    which, size = sys.argv[1], int(sys.argv[2])
    conn = os.environ["MIZAIC_BENCH_CONN"]
    out = (ours if which == "ours" else raw)(conn, size)
    report: dict[str, Any] = {
        phase: {"growth_mib": m.growth_mib, "seconds": m.seconds,
                "base_mib": m.base / MIB, "peak_mib": m.peak / MIB, "hwm": m.hwm_ok}
        for phase, m in out.items()
    }
    # in and out: the highest RSS of either phase, above the RSS before the put
    report["overall"] = {
        "growth_mib": (max(out["put"].peak, out["get"].peak) - out["put"].base) / MIB,
        "seconds": out["put"].seconds + out["get"].seconds,
    }
    print(json.dumps(report))
    return 0


if __name__ == "__main__":
    sys.exit(main())
