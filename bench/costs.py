"""What one storage request costs here, on each side: ``python -m bench.costs [--n N]``.

Not a scenario of ``make bench``: a measurement behind docs/performance.md. For each raw SDK
call (the calls the library's operations are made of: a record PUT, a GET, an audit append),
and for the library's own create and get of a 12-field record, it prints the wall time, the
client's CPU time (this process, every thread) and Azurite's CPU time, per call, run one
after another against a throw-away Azurite. The raw calls go through the library's own HTTP
session (``lean_service``), so the two sides differ only in what the library adds.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable

from ._common import (
    EVENTS,
    azurite,
    lean_service,
    library,
    new_subject,
    record_fields,
    record_json,
)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.costs")
    parser.add_argument("--n", type=int, default=300, help="calls per line (default 300)")
    args = parser.parse_args(argv)
    n = args.n
    if n < 1:
        parser.error("--n must be at least 1")

    import psutil

    with azurite() as server:
        node = psutil.Process(server.pid)
        raw = lean_service(server.connection_string)
        container = raw.get_container_client("bench-costs")
        container.create_container()
        segment = container.get_blob_client("audit-like")
        segment.create_append_blob()
        fields = record_fields(0)
        data = record_json(fields)
        line = b"x" * 400
        lib = library(server.connection_string, "costs")
        subject = new_subject()
        refs = [lib.scope.create_record(subject, category="adult", fields=fields, events=EVENTS)
                for _ in range(n)]

        print(f"{'call':<40} {'wall ms':>8} {'client CPU ms':>14} {'Azurite CPU ms':>15} "
              f"{'requests':>9}")

        def measure(name: str, call: Callable[[int], object]) -> None:
            call(n)  # warm-up (an extra call, outside the figures)
            node_before = node.cpu_times()
            requests_before = lib.processor.request_count
            cpu, wall = time.process_time(), time.perf_counter()
            for i in range(n):
                call(i)
            wall = time.perf_counter() - wall
            cpu = time.process_time() - cpu
            node_after = node.cpu_times()
            azurite_cpu = (node_after.user + node_after.system
                           - node_before.user - node_before.system)
            counted = (lib.processor.request_count - requests_before) / n
            requests = f"{counted:.2f}" if counted else "(raw)"  # the library counts its own
            print(f"{name:<40} {wall / n * 1e3:8.2f} {cpu / n * 1e3:14.2f} "
                  f"{azurite_cpu / n * 1e3:15.2f} {requests:>9}")

        measure("raw upload_blob, 2 KiB, new blob",
                lambda i: container.get_blob_client(f"put/{i}").upload_blob(data))
        measure("raw download_blob, 2 KiB",
                lambda i: container.get_blob_client(f"put/{i % n}").download_blob().readall())
        measure("raw append_block, 400 bytes",
                lambda i: segment.append_block(line, length=len(line)))
        measure("create_record, known subject (library)",
                lambda i: lib.scope.create_record(subject, category="adult", fields=fields,
                                                  events=EVENTS))
        measure("create_record, new subject (library)",
                lambda i: lib.scope.create_record(new_subject(), category="adult",
                                                  fields=fields, events=EVENTS))
        measure("get_record, all fields (library)",
                lambda i: lib.scope.get_record(refs[i % n].record_id))
        lib.close()
        raw.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
