"""``mizaic-processor``: the controller-admin command line.

Reads the connection from ``MIZAIC_*`` environment variables (see
:class:`~mizaic_processor.Settings`), plus ``MIZAIC_CONTROLLER`` (the controller id) and
``MIZAIC_ACTOR`` (the admin's actor id) unless ``--controller`` / ``--actor`` are given.
Exits 0 on success, 2 on bad input (one line on stderr), 1 on any other library error.
Each command group lives in its own module, which adds its sub-commands here.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable, Sequence
from typing import Any, TextIO

from mizaic_processor.errors import (
    AccessDeniedError,
    ConfigurationError,
    InvalidInputError,
    MizaicError,
    NotFoundError,
)

__all__ = ["main"]

Handler = Callable[[argparse.Namespace, "Context"], int]


class Context:
    """What a command needs: the processor and a controller-admin scope, built lazily."""

    def __init__(self, args: argparse.Namespace, out: TextIO, err: TextIO) -> None:
        self.args = args
        self.out = out
        self.err = err
        self._processor: Any = None

    @property
    def processor(self) -> Any:
        if self._processor is None:
            from mizaic_processor.processor import Processor

            self._processor = Processor.from_settings()
        return self._processor

    def scope(self) -> Any:
        from mizaic_processor.models import Actor

        controller = self.args.controller or os.environ.get("MIZAIC_CONTROLLER")
        actor = self.args.actor or os.environ.get("MIZAIC_ACTOR")
        if not controller:
            raise InvalidInputError("give --controller or set MIZAIC_CONTROLLER")
        if not actor:
            raise InvalidInputError("give --actor or set MIZAIC_ACTOR")
        return self.processor.tenant(controller, actor=Actor.controller_admin(actor))

    def is_terminal(self) -> bool:
        return bool(getattr(self.out, "isatty", lambda: False)())

    def close(self) -> None:
        if self._processor is not None:
            self._processor.close()


def add_json_flag(parser: argparse.ArgumentParser) -> None:
    """Give a command the shared ``--json`` option (machine-readable output)."""
    parser.add_argument("--json", action="store_true", help="machine-readable JSON output")


def build_parser() -> argparse.ArgumentParser:
    """The argument parser with every command group registered."""
    parser = argparse.ArgumentParser(
        prog="mizaic-processor",
        description="Controller-admin commands for mizaic_processor.",
    )
    parser.add_argument("--controller", help="controller id (default: $MIZAIC_CONTROLLER)")
    parser.add_argument("--actor", help="your actor id (default: $MIZAIC_ACTOR)")
    groups = parser.add_subparsers(dest="group", required=True, metavar="GROUP")
    for register in _groups():
        register(groups)
    return parser


def _groups() -> list[Callable[[Any], None]]:
    registrars: list[Callable[[Any], None]] = []
    for module_name in ("_cli_retention", "_cli_requests", "_cli_audit"):
        try:
            module = __import__(f"mizaic_processor.{module_name}", fromlist=["register"])
        except ModuleNotFoundError as exc:
            if exc.name != f"mizaic_processor.{module_name}":
                raise
            continue
        registrars.append(module.register)
    return registrars


def main(argv: Sequence[str] | None = None, *, out: TextIO | None = None,
         err: TextIO | None = None) -> int:
    """Run the command line; return the exit status."""
    out = out or sys.stdout
    err = err or sys.stderr
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:
        return int(exc.code or 0)
    ctx = Context(args, out, err)
    handler: Handler = args.handler
    try:
        return handler(args, ctx)
    except (InvalidInputError, ConfigurationError) as exc:
        print(f"mizaic-processor: error: {exc}", file=err)
        return 2
    except (AccessDeniedError, NotFoundError) as exc:
        print(f"mizaic-processor: error: {exc}", file=err)
        return 2
    except MizaicError as exc:
        print(f"mizaic-processor: failed: {type(exc).__name__}: {exc}", file=err)
        return 1
    finally:
        ctx.close()


if __name__ == "__main__":
    sys.exit(main())
