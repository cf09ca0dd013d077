"""Profile one hot path single-threaded against a throw-away Azurite.

``python -m bench.profile NAME [--n N] [--size 300K]`` with NAME one of ``create``
(small record, existing subject), ``create-new`` (small record, new subject), ``get``,
``get-one``, ``doc-put``, ``doc-get``, ``crypto``. Uses pyinstrument when installed
(wall-clock, so time spent waiting on Azurite and on the audit ticket shows up), cProfile
otherwise. Writes ``bench/results/profile-NAME.txt``.
"""

from __future__ import annotations

import argparse
import cProfile
import io
import os
import pstats
import sys
from collections.abc import Callable

from ._common import EVENTS, KIB, azurite, library, new_subject, record_fields
from .report import RESULTS


def _size(text: str) -> int:
    text = text.strip().upper()
    mult = {"K": KIB, "M": KIB * KIB}.get(text[-1:], 1)
    return int(text.rstrip("KM")) * mult


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.profile")
    parser.add_argument("name", choices=["create", "create-new", "get", "get-one", "doc-put",
                                         "doc-get", "crypto"])
    parser.add_argument("--n", type=int, default=300)
    parser.add_argument("--size", default="300K")
    parser.add_argument("--cprofile", action="store_true", help="use cProfile even if "
                        "pyinstrument is installed")
    args = parser.parse_args(argv)
    size = _size(args.size)
    with azurite() as server:
        lib = library(server.connection_string, "prof")
        scope = lib.scope
        subject = new_subject()
        fields = record_fields(0)
        content = os.urandom(size)
        ids = [scope.create_record(subject, category="adult", fields=fields, events=EVENTS,
                                   content=content if args.name == "doc-get" else None,
                                   content_type="application/pdf"
                                   if args.name == "doc-get" else None).record_id
               for _ in range(min(args.n, 50) if args.name.startswith(("get", "doc-get"))
                              else 3)]

        def create() -> None:
            for _ in range(args.n):
                scope.create_record(subject, category="adult", fields=fields, events=EVENTS)

        def create_new() -> None:
            for _ in range(args.n):
                scope.create_record(new_subject(), category="adult", fields=fields,
                                    events=EVENTS)

        def get(wanted: list[str] | None = None) -> None:
            for i in range(args.n):
                scope.get_record(ids[i % len(ids)], fields=wanted)

        def doc_put() -> None:
            for _ in range(args.n):
                scope.create_record(subject, category="adult", fields=fields, events=EVENTS,
                                    content=content, content_type="application/pdf")

        def doc_get() -> None:
            for i in range(args.n):
                with scope.open_content(ids[i % len(ids)]) as reader:
                    for _ in reader:
                        pass

        def crypto() -> None:
            from . import crypto as crypto_mod
            from ._common import Config

            crypto_mod.run(Config(reps=1, warmup=False, crypto_records=args.n))

        work: dict[str, Callable[[], None]] = {
            "create": create, "create-new": create_new, "get": get,
            "get-one": lambda: get(["diagnosis"]), "doc-put": doc_put, "doc-get": doc_get,
            "crypto": crypto,
        }
        fn = work[args.name]
        RESULTS.mkdir(parents=True, exist_ok=True)
        out_path = RESULTS / f"profile-{args.name}.txt"
        try:
            if args.cprofile:
                raise ImportError
            from pyinstrument import Profiler
        except ImportError:
            prof = cProfile.Profile()
            prof.enable()
            fn()
            prof.disable()
            buf = io.StringIO()
            pstats.Stats(prof, stream=buf).sort_stats("cumulative").print_stats(40)
            text = buf.getvalue()
        else:
            profiler = Profiler(interval=0.0005)
            profiler.start()
            fn()
            profiler.stop()
            text = profiler.output_text(unicode=True, color=False, show_all=False)
        out_path.write_text(text)
        print(text)
        print(f"requests sent by the library: {lib.processor.request_count}", file=sys.stderr)
        lib.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
