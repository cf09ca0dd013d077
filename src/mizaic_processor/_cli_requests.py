"""``mizaic-processor requests ...``: subject-request commands for a controller admin.

``list`` (``--open``, ``--due-soon N``, ``--overdue``), ``show``, ``acknowledge``,
``pause`` / ``resume`` (the clock), ``extend``, ``instruct``, ``export``, ``complete``
and ``refuse``. Every command acts as the controller admin named by ``MIZAIC_ACTOR`` (or
``--actor``) on the controller named by ``MIZAIC_CONTROLLER`` (or ``--controller``).

Only ``show`` prints the requester's details (subject identifier as given, contact, text):
to the controller's own admin, which is where they belong. A subject identifier typed on
the command line (``--nhs-number``) is used, never echoed. Bad input exits with status 2
and one line on stderr.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn

from mizaic_processor._core.deadlines import WaitingFor
from mizaic_processor.cli import add_json_flag
from mizaic_processor.errors import InvalidInputError
from mizaic_processor.models import HospitalNumber, NHSNumber

if TYPE_CHECKING:
    from mizaic_processor._request_models import (
        Fulfilment,
        RequestDetails,
        RequestSummary,
    )
    from mizaic_processor.cli import Context

__all__ = ["register"]

PROG = "mizaic-processor"
_WAITING = tuple(w.value for w in WaitingFor)


class _OneLineParser(argparse.ArgumentParser):
    """An argument parser whose errors are one line on stderr and exit status 2."""

    def error(self, message: str) -> NoReturn:
        first = message.splitlines()[0] if message else "invalid arguments"
        self.exit(2, f"{PROG}: error: {self.prog.removeprefix(PROG + ' ')}: {first}\n")


def register(groups: Any) -> None:
    """Add the ``requests`` command group to the dispatcher's sub-parsers."""
    group = groups.add_parser(
        "requests", help="subject requests: list, show, acknowledge, clock, instruct",
        description="Subject requests forwarded to this controller.",
    )
    group.__class__ = _OneLineParser  # one-line errors for an unknown command too
    commands = group.add_subparsers(dest="command", metavar="COMMAND",
                                    parser_class=_OneLineParser, required=True)

    list_ = commands.add_parser("list", help="requests (open, due soon, overdue)")
    which = list_.add_mutually_exclusive_group()
    which.add_argument("--open", action="store_true", help="only open requests")
    which.add_argument("--due-soon", type=_days, metavar="N",
                       help="open requests due within N days")
    which.add_argument("--overdue", action="store_true", help="open requests past due")
    list_.add_argument("--as-of", type=_date, metavar="YYYY-MM-DD", help="evaluate on a day")
    add_json_flag(list_)
    list_.set_defaults(handler=_list)

    show = commands.add_parser("show", help="one request, with the requester's details")
    show.add_argument("request_id")
    add_json_flag(show)
    show.set_defaults(handler=_show)

    ack = commands.add_parser("acknowledge", help="acknowledge a request")
    ack.add_argument("request_id")
    _subject_flags(ack, required=False,
                   help_text="the subject identified (access: holds their data until closed)")
    add_json_flag(ack)
    ack.set_defaults(handler=_acknowledge)

    pause = commands.add_parser("pause", help="stop the clock: identity, a fee or clarification")
    pause.add_argument("request_id")
    pause.add_argument("--waiting-for", required=True, choices=_WAITING)
    pause.add_argument("--on", type=_date, metavar="YYYY-MM-DD", help="the day asked (today)")
    add_json_flag(pause)
    pause.set_defaults(handler=_pause)

    resume = commands.add_parser("resume", help="restart the clock: what was asked arrived")
    resume.add_argument("request_id")
    resume.add_argument("--received", choices=_WAITING,
                        help="what arrived (needed only when several are awaited)")
    resume.add_argument("--on", type=_date, metavar="YYYY-MM-DD", help="the day it arrived")
    add_json_flag(resume)
    resume.set_defaults(handler=_resume)

    extend = commands.add_parser("extend", help="extend the time limit by 1 or 2 months")
    extend.add_argument("request_id")
    extend.add_argument("--months", required=True, type=int, choices=(1, 2))
    extend.add_argument("--reason", required=True, metavar="TEXT")
    extend.add_argument("--on", type=_date, metavar="YYYY-MM-DD", help="the day decided")
    add_json_flag(extend)
    extend.set_defaults(handler=_extend)

    instruct = commands.add_parser(
        "instruct", help="instruct the processor to carry a request out",
        description=(
            "objection/complaint: --note. erasure: --nhs-number|--hospital-number. "
            "restriction: the subject, --lift to lift. rectification: --record, --etag and "
            "--set NAME=JSON / --remove NAME. access/portability: see 'export'."
        ),
    )
    instruct.add_argument("request_id")
    instruct.add_argument("--note", metavar="TEXT", help="the instruction's note (sealed)")
    _subject_flags(instruct, required=False, help_text="the subject")
    instruct.add_argument("--lift", action="store_true", help="restriction: lift it")
    instruct.add_argument("--record", metavar="ID", help="rectification: the record")
    instruct.add_argument("--etag", metavar="ETAG", help="rectification: its current etag")
    instruct.add_argument("--set", action="append", default=[], metavar="NAME=JSON",
                          dest="set_fields", help="rectification: a corrected field")
    instruct.add_argument("--remove", action="append", default=[], metavar="NAME",
                          dest="remove_fields", help="rectification: a field to remove")
    add_json_flag(instruct)
    instruct.set_defaults(handler=_instruct)

    export = commands.add_parser(
        "export", help="access/portability: export the subject's data to a file of yours"
    )
    export.add_argument("request_id")
    _subject_flags(export, required=True, help_text="the subject")
    export.add_argument("--output", required=True, type=Path, metavar="FILE",
                        help="the ZIP to create (never overwritten)")
    export.add_argument("--note", metavar="TEXT", help="the instruction's note (sealed)")
    add_json_flag(export)
    export.set_defaults(handler=_export)

    complete = commands.add_parser("complete", help="close a request as completed")
    complete.add_argument("request_id")
    complete.add_argument("--note", metavar="TEXT")
    add_json_flag(complete)
    complete.set_defaults(handler=_complete)

    refuse = commands.add_parser("refuse", help="close a request as refused")
    refuse.add_argument("request_id")
    refuse.add_argument("--reason", required=True, metavar="TEXT")
    add_json_flag(refuse)
    refuse.set_defaults(handler=_refuse)


def _subject_flags(parser: argparse.ArgumentParser, *, required: bool, help_text: str) -> None:
    target = parser.add_mutually_exclusive_group(required=required)
    target.add_argument("--nhs-number", metavar="N", help=help_text)
    target.add_argument("--hospital-number", metavar="N", help=help_text)


def _days(value: str) -> int:
    if not value.isdigit() or int(value) > 366:
        raise argparse.ArgumentTypeError("a number of days, 0..366")
    return int(value)


def _date(value: str) -> dt.date:
    try:
        return dt.date.fromisoformat(value)
    except ValueError:
        raise argparse.ArgumentTypeError("a date as YYYY-MM-DD") from None


def _subject(args: argparse.Namespace) -> NHSNumber | HospitalNumber | None:
    if getattr(args, "nhs_number", None):
        return NHSNumber(args.nhs_number)
    if getattr(args, "hospital_number", None):
        return HospitalNumber(args.hospital_number)
    return None


# -- output ------------------------------------------------------------------------------


def _summary_line(s: RequestSummary) -> str:
    due = s.due_on.isoformat() if s.due_on else "-"
    if s.waiting_for:
        due = "paused (" + ",".join(w.value for w in s.waiting_for) + ")"
    days = "" if s.days_remaining is None else f"{s.days_remaining:>5}"
    flag = "  OVERDUE" if s.overdue else ""
    return (f"{s.request_id}  {s.kind.value:<13} {s.status.value:<22} "
            f"{s.received_on.isoformat()}  {due:<12} {days}{flag}")


def _print_summary(ctx: Context, summary: RequestSummary, as_json: bool) -> int:
    if as_json:
        print(summary.model_dump_json(), file=ctx.out)
    else:
        print(_summary_line(summary), file=ctx.out)
    return 0


def _details_lines(d: RequestDetails) -> list[str]:
    contact = d.contact
    lines = [
        f"request      {d.request_id}",
        f"kind         {d.kind.value}",
        f"status       {d.status.value}",
        f"channel      {d.channel.value}",
        f"received     {d.received_at.isoformat()}",
        f"due          {d.due_on.isoformat() if d.due_on else '-'}"
        + (f" (waiting for {', '.join(w.value for w in d.waiting_for)})"
           if d.waiting_for else "")
        + (f" (extended by {d.extension_months} months)" if d.extension_months else ""),
        f"subject      {d.subject}",
    ]
    for label, value in (("name", contact.name), ("email", contact.email),
                         ("phone", contact.phone), ("address", contact.postal_address)):
        if value:
            lines.append(f"{label:<12} {value}")
    if d.text:
        lines.append("text")
        lines.extend("  " + line for line in d.text.splitlines())
    if d.instruction_id:
        lines.append(f"instruction  {d.instruction_id}")
    if d.refusal_reason:
        lines.append(f"refused      {d.refusal_reason}")
    lines.append("history")
    lines.extend(f"  {h.at.isoformat()}  {h.event:<26} {h.status.value:<22} {h.actor}"
                 for h in d.history)
    return lines


# -- handlers ----------------------------------------------------------------------------


def _list(args: argparse.Namespace, ctx: Context) -> int:
    found = list(ctx.scope().requests.list(
        open_only=args.open, due_within_days=args.due_soon, overdue=args.overdue,
        as_of=args.as_of,
    ))
    if args.json:
        print(json.dumps([s.model_dump(mode="json") for s in found], indent=2), file=ctx.out)
        return 0
    if not found:
        print("no requests", file=ctx.out)
    for summary in found:
        print(_summary_line(summary), file=ctx.out)
    return 0


def _show(args: argparse.Namespace, ctx: Context) -> int:
    found = ctx.scope().requests.get(args.request_id)
    if args.json:
        print(found.model_dump_json(indent=2), file=ctx.out)
    else:
        print("\n".join(_details_lines(found)), file=ctx.out)
    return 0


def _acknowledge(args: argparse.Namespace, ctx: Context) -> int:
    summary = ctx.scope().requests.acknowledge(args.request_id, subject=_subject(args))
    return _print_summary(ctx, summary, args.json)


def _pause(args: argparse.Namespace, ctx: Context) -> int:
    summary = ctx.scope().requests.pause(args.request_id, args.waiting_for, on=args.on)
    return _print_summary(ctx, summary, args.json)


def _resume(args: argparse.Namespace, ctx: Context) -> int:
    summary = ctx.scope().requests.resume(args.request_id, args.received, on=args.on)
    return _print_summary(ctx, summary, args.json)


def _extend(args: argparse.Namespace, ctx: Context) -> int:
    summary = ctx.scope().requests.extend(args.request_id, months=args.months,
                                          reason=args.reason, on=args.on)
    return _print_summary(ctx, summary, args.json)


def _fields(pairs: list[str]) -> dict[str, Any] | None:
    if not pairs:
        return None
    fields: dict[str, Any] = {}
    for pair in pairs:
        name, sep, raw = pair.partition("=")
        if not sep or not name:
            raise InvalidInputError("--set takes NAME=JSON")
        try:
            fields[name] = json.loads(raw)
        except (ValueError, RecursionError):
            raise InvalidInputError("--set takes NAME=JSON (the value is not JSON)") from None
    return fields


def _print_fulfilment(ctx: Context, done: Fulfilment, as_json: bool) -> int:
    if as_json:
        print(done.model_dump_json(indent=2), file=ctx.out)
        return 0
    print(_summary_line(done.request), file=ctx.out)
    print(f"instruction  {done.instruction_id}", file=ctx.out)
    if done.export is not None:
        print(f"exported     {done.export.records} records, {done.export.documents} "
              f"documents ({done.export.document_bytes} bytes)", file=ctx.out)
    if done.erasure is not None:
        print(f"erased       {len(done.erasure.records_destroyed)} records, key destroyed: "
              f"{done.erasure.key_destroyed}", file=ctx.out)
    if done.record is not None:
        print(f"rectified    {done.record.record_id} (version {done.record.version}, "
              f"etag {done.record.etag})", file=ctx.out)
    if done.restricted is not None:
        print(f"restricted   {done.restricted}", file=ctx.out)
    return 0


def _instruct(args: argparse.Namespace, ctx: Context) -> int:
    subject = _subject(args)
    restricted = not args.lift
    done = ctx.scope().requests.instruct(
        args.request_id, note=args.note, subject=subject, record_id=args.record,
        etag=args.etag, fields=_fields(args.set_fields),
        remove_fields=tuple(args.remove_fields), restricted=restricted,
    )
    return _print_fulfilment(ctx, done, args.json)


def _export(args: argparse.Namespace, ctx: Context) -> int:
    subject = _subject(args)
    scope = ctx.scope()
    path: Path = args.output
    try:
        out = path.open("xb")
    except FileExistsError:
        raise InvalidInputError("the output file exists; it is never overwritten") from None
    except OSError:
        raise InvalidInputError("cannot create the output file") from None
    try:
        with out:
            done = scope.requests.instruct(args.request_id, note=args.note, subject=subject,
                                           destination=out)
    except BaseException:
        path.unlink(missing_ok=True)
        raise
    return _print_fulfilment(ctx, done, args.json)


def _complete(args: argparse.Namespace, ctx: Context) -> int:
    summary = ctx.scope().requests.complete(args.request_id, note=args.note)
    return _print_summary(ctx, summary, args.json)


def _refuse(args: argparse.Namespace, ctx: Context) -> int:
    summary = ctx.scope().requests.refuse(args.request_id, reason=args.reason)
    return _print_summary(ctx, summary, args.json)
