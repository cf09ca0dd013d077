"""``mizaic-processor audit ...`` and ``mizaic-processor keys ...`` commands."""

from __future__ import annotations

import argparse
import json
from typing import TYPE_CHECKING, Any

from mizaic_processor._progress import ProgressBar
from mizaic_processor.cli import add_json_flag
from mizaic_processor.errors import AuditTamperedError, InvalidInputError

if TYPE_CHECKING:
    from mizaic_processor.cli import Context

__all__ = ["register"]


def register(groups: Any) -> None:
    """Add the ``audit`` and ``keys`` command groups."""
    audit = groups.add_parser("audit", help="verify and export the audit trail")
    commands = audit.add_subparsers(dest="command", required=True, metavar="COMMAND")
    verify = commands.add_parser("verify", help="verify every chain and checkpoint")
    add_json_flag(verify)
    verify.set_defaults(handler=_verify)
    export = commands.add_parser("export", help="export the trail (FHIR AuditEvent + verifier)")
    export.add_argument("directory", help="where to write the export")
    export.set_defaults(handler=_export)

    keys = groups.add_parser("keys", help="rotate the controller's keys")
    key_commands = keys.add_subparsers(dest="command", required=True, metavar="COMMAND")
    rotate = key_commands.add_parser("rotate", help="rotate a key (resumable)")
    rotate.add_argument("which", choices=["kek", "controller-key", "index-key"])
    rotate.add_argument("--retire", action="store_true",
                        help="finish the rotation: destroy the old version(s)")
    rotate.set_defaults(handler=_rotate)
    check = key_commands.add_parser(
        "verify-index",
        help="check every subject with records is found by its identifier; put back lost "
        "index entries (exit status 1 if anything was found)",
    )
    add_json_flag(check)
    check.set_defaults(handler=_verify_index)


def _verify(args: argparse.Namespace, ctx: Context) -> int:
    try:
        report = ctx.scope().audit.verify()
    except AuditTamperedError as exc:
        if args.json:
            print(json.dumps({"intact": False, "chain": exc.chain, "seq": exc.seq,
                              "kind": exc.kind}), file=ctx.out)
        else:
            print(f"BROKEN: {exc}", file=ctx.out)
        return 1
    if args.json:
        print(json.dumps({"intact": True, **report.model_dump()}), file=ctx.out)
    else:
        print(f"intact: {report.chains} chains, {report.events} events, "
              f"{report.checkpoints} checkpoints verified", file=ctx.out)
    return 0


def _export(args: argparse.Namespace, ctx: Context) -> int:
    target = ctx.scope().audit.export(args.directory)
    print(f"exported to {target}; verify offline with: python {target}/verify_audit.py "
          f"{target}", file=ctx.out)
    return 0


def _rotate(args: argparse.Namespace, ctx: Context) -> int:
    keys = ctx.scope().keys
    bar = ProgressBar(f"rotate {args.which}", ctx.err)
    try:
        if args.which == "kek":
            if args.retire:
                raise InvalidInputError(
                    "--retire does not apply to the KEK: disable its old version in the vault"
                )
            print(f"new KEK version: {keys.rotate_kek()}", file=ctx.out)
        elif args.which == "controller-key":
            if args.retire:
                print(f"retired versions: {keys.retire_old_controller_keys(progress=bar)}",
                      file=ctx.out)
            else:
                report = keys.rotate_controller_key(progress=bar)
                print(f"controller key v{report.version}: {report.changed} of "
                      f"{report.examined} subject keys re-wrapped", file=ctx.out)
        elif args.retire:
            print(f"retired versions: {keys.retire_old_index_keys(progress=bar)}",
                  file=ctx.out)
        else:
            report = keys.rotate_index_key(progress=bar)
            print(f"index key v{report.version}: {report.changed} of {report.examined} "
                  f"entries re-indexed ({report.skipped} without records)", file=ctx.out)
    finally:
        bar.close()
    return 0


def _verify_index(args: argparse.Namespace, ctx: Context) -> int:
    bar = ProgressBar("verify index", ctx.err)
    try:
        report = ctx.scope().keys.verify_index(progress=bar)
    finally:
        bar.close()
    if args.json:
        print(json.dumps(report.model_dump(mode="json")), file=ctx.out)
    else:
        print(f"{report.examined} subject keys examined ({report.without_records} without "
              f"records): {report.restored} index entries put back, {len(report.split)} "
              f"split subjects, {len(report.damaged)} damaged", file=ctx.out)
        for skid in report.split:
            print(f"  split: subject key {skid}", file=ctx.out)
        for skid in report.damaged:
            print(f"  damaged: subject key {skid}", file=ctx.out)
    return 1 if report.restored or report.split or report.damaged else 0
