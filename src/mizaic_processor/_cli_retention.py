"""``mizaic-processor retention ...``: retention commands for a controller admin.

Instructions (``show``, ``set``, ``adopt-preset``, ``history``, ``recompute``), the holds
register (``holds list|place|release``), and the appraisal -> approval -> destruction
cycle (``appraise``, ``approve``, ``destroy``, ``evidence``). Every command acts as the
controller admin named by ``MIZAIC_ACTOR`` (or ``--actor``) on the controller named by
``MIZAIC_CONTROLLER`` (or ``--controller``).

Output never contains a patient identifier: records are named by their opaque ids and
subjects by their pseudonymous reference. A subject identifier typed on the command line
(``--nhs-number``) is used to find the subject and is not echoed back. Bad input exits
with status 2 and one line on stderr.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn, TextIO

from mizaic_processor._core.retention import (
    AfterEvents,
    Indefinite,
    RetentionRule,
    UntilBirthday,
    parse_duration,
)
from mizaic_processor._ledger import Hold
from mizaic_processor._progress import ProgressBar
from mizaic_processor.cli import add_json_flag
from mizaic_processor.errors import InvalidInputError
from mizaic_processor.models import HospitalNumber, NHSNumber
from mizaic_processor.retention import (
    PRESETS,
    Appraisal,
    AppraisalItem,
    DestructionEvidence,
    DestructionReport,
    RetentionInstruction,
    rule_from_json,
)

if TYPE_CHECKING:
    from mizaic_processor.cli import Context

__all__ = ["describe_rule", "register"]

PROG = "mizaic-processor"
DEFAULT_PRESET = "nhs-records-code-2021"
MAX_RULE_FILE = 64 * 1024


class _OneLineParser(argparse.ArgumentParser):
    """An argument parser whose errors are one line on stderr and exit status 2."""

    def error(self, message: str) -> NoReturn:
        first = message.splitlines()[0] if message else "invalid arguments"
        self.exit(2, f"{PROG}: error: {self.prog.removeprefix(PROG + ' ')}: {first}\n")


# -- registration ------------------------------------------------------------------------


def register(groups: Any) -> None:
    """Add the ``retention`` command group to the dispatcher's sub-parsers."""
    retention = groups.add_parser(
        "retention",
        help="retention instructions, holds, appraisal, approval, destruction",
        description="Retention of the controller's records (NHS Records Management Code).",
    )
    # The dispatcher made it a plain ArgumentParser; its errors (an unknown command) must be
    # one line too. _OneLineParser adds no state, so switching the class is safe.
    retention.__class__ = _OneLineParser
    commands = retention.add_subparsers(
        dest="command", metavar="COMMAND", parser_class=_OneLineParser, required=True
    )

    show = commands.add_parser("show", help="the current instruction of each category")
    show.add_argument("category", nargs="?", help="one category (default: all)")
    add_json_flag(show)
    show.set_defaults(handler=_show)

    set_ = commands.add_parser(
        "set",
        help="record a new instruction version for a category",
        description=(
            "Give --period and one or more --trigger (the period runs from the latest of "
            "the triggers recorded on a record), or --rule-json with a full rule."
        ),
    )
    set_.add_argument("category")
    set_.add_argument("--period", help="ISO 8601 duration, e.g. P8Y")
    set_.add_argument(
        "--trigger", action="append", default=[], metavar="EVENT",
        help="trigger event, e.g. last_treatment (repeat for several: the latest counts)",
    )
    set_.add_argument("--on-expiry", choices=("appraise", "destroy"), default=None,
                      help="appraise (default) or destroy: a standing destruction instruction")
    set_.add_argument("--rule-json", metavar="FILE",
                      help="a RetentionRule as JSON ('-' reads standard input)")
    set_.add_argument("--override-reason", metavar="TEXT",
                      help="required when the instruction is shorter than the Code's minimum")
    add_json_flag(set_)
    set_.set_defaults(handler=_set)

    adopt = commands.add_parser("adopt-preset", help="adopt a named retention schedule")
    adopt.add_argument("preset", nargs="?", default=DEFAULT_PRESET,
                       help=f"one of: {', '.join(sorted(PRESETS))} (default {DEFAULT_PRESET})")
    add_json_flag(adopt)
    adopt.set_defaults(handler=_adopt)

    history = commands.add_parser("history", help="every version of the instructions")
    history.add_argument("category", nargs="?", help="one category (default: all)")
    add_json_flag(history)
    history.set_defaults(handler=_history)

    recompute = commands.add_parser(
        "recompute", help="recompute due dates of records under older instruction versions"
    )
    recompute.add_argument("category")
    recompute.set_defaults(handler=_recompute)

    _register_holds(commands)

    appraise = commands.add_parser("appraise", help="list what is due, held, or uninstructed")
    appraise.add_argument("--as-of", required=True, metavar="YYYY-MM-DD",
                          help="the day to appraise on")
    add_json_flag(appraise)
    appraise.set_defaults(handler=_appraise)

    approve = commands.add_parser("approve", help="approve destroying an appraisal's records")
    approve.add_argument("appraisal_id")
    approve.add_argument("--record", action="append", default=None, metavar="ID",
                         dest="records", help="approve only these records (repeatable)")
    approve.add_argument("--note", metavar="TEXT", help="a note kept with the instruction")
    add_json_flag(approve)
    approve.set_defaults(handler=_approve)

    destroy = commands.add_parser("destroy", help="destroy what an appraisal approved")
    destroy.add_argument("appraisal_id")
    destroy.add_argument("--shard", type=str, default=None, metavar="I",
                         help="this worker's shard, 0..N-1 (with --shards)")
    destroy.add_argument("--shards", type=str, default=None, metavar="N",
                         help="how many workers share the appraisal")
    add_json_flag(destroy)
    destroy.set_defaults(handler=_destroy)

    evidence = commands.add_parser("evidence", help="destruction evidence")
    evidence.add_argument("--appraisal", metavar="ID", help="only this appraisal's")
    add_json_flag(evidence)
    evidence.set_defaults(handler=_evidence)


def _register_holds(commands: Any) -> None:
    holds = commands.add_parser("holds", help="the register of holds")
    sub = holds.add_subparsers(dest="holds_command", metavar="COMMAND",
                               parser_class=_OneLineParser, required=True)

    list_ = sub.add_parser("list", help="holds in force (--all: released ones too)")
    list_.add_argument("--all", action="store_true", help="include released holds")
    add_json_flag(list_)
    list_.set_defaults(handler=_holds_list)

    place = sub.add_parser("place", help="place a hold")
    place.add_argument("--kind", required=True, choices=("legal", "inquiry", "access_request"))
    place.add_argument("--reason", required=True, metavar="TEXT")
    target = place.add_mutually_exclusive_group(required=True)
    target.add_argument("--nhs-number", metavar="N", help="every record of this patient")
    target.add_argument("--hospital-number", metavar="N", help="every record of this patient")
    target.add_argument("--record", nargs="+", metavar="ID", dest="records",
                        help="these records")
    target.add_argument("--category", metavar="C", help="every record of a category")
    target.add_argument("--whole-controller", action="store_true",
                        help="every record of the controller")
    place.add_argument("--request-id", metavar="ID", help="the subject request it protects")
    add_json_flag(place)
    place.set_defaults(handler=_holds_place)

    release = sub.add_parser("release", help="release a hold")
    release.add_argument("hold_id")
    release.add_argument("--reason", required=True, metavar="TEXT")
    add_json_flag(release)
    release.set_defaults(handler=_holds_release)


# -- formatting --------------------------------------------------------------------------


def describe_rule(rule: RetentionRule) -> str:
    """A one-line, human description of a retention rule (no dates, no identifiers).

    >>> describe_rule(RetentionRule.after("P8Y", "last_treatment"))
    'P8Y after last_treatment'
    """
    parts: list[str] = []
    for clause in rule.clauses:
        if isinstance(clause, AfterEvents):
            events = ", ".join(clause.events)
            if len(clause.events) > 1:
                events = f"{clause.combine} of ({events})"
            parts.append(f"{clause.period} after {events}")
        elif isinstance(clause, UntilBirthday):
            text = f"until {_ordinal(clause.age)} birthday"
            if clause.extended_age is not None:
                text += (
                    f" ({_ordinal(clause.extended_age)} if aged {clause.extended_from_age}+ at "
                    f"{'/'.join(clause.age_at)})"
                )
            parts.append(text)
        elif isinstance(clause, Indefinite):
            parts.append("indefinitely")
    text = parts[0] if len(parts) == 1 else f"{rule.combine} of: " + "; ".join(parts)
    if rule.requires:
        text += f" [needs {', '.join(rule.requires)}]"
    return text


def _ordinal(n: int) -> str:
    suffix = "th" if 10 <= n % 100 <= 20 else {1: "st", 2: "nd", 3: "rd"}.get(n % 10, "th")
    return f"{n}{suffix}"


def _when(value: dt.datetime | dt.date | None) -> str:
    if value is None:
        return "-"
    if isinstance(value, dt.datetime):
        return value.astimezone(dt.UTC).strftime("%Y-%m-%d %H:%M UTC")
    return value.isoformat()


def _table(out: TextIO, headers: Sequence[str], rows: Sequence[Sequence[str]]) -> None:
    widths = [len(h) for h in headers]
    for row in rows:
        widths = [max(w, len(cell)) for w, cell in zip(widths, row, strict=True)]
    line = "  ".join(h.ljust(w) for h, w in zip(headers, widths, strict=True))
    print(line.rstrip(), file=out)
    print("  ".join("-" * w for w in widths), file=out)
    for row in rows:
        print("  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip(), file=out)


def _dump(out: TextIO, value: Any) -> None:
    json.dump(value, out, indent=2, sort_keys=True)
    out.write("\n")


def _instruction_json(instruction: RetentionInstruction) -> dict[str, Any]:
    data = instruction.model_dump(mode="json")
    data["summary"] = describe_rule(instruction.rule)
    return data


def _flags(instruction: RetentionInstruction) -> str:
    flags = []
    if instruction.rule.on_expiry == "destroy":
        flags.append("STANDING DESTROY")
    if instruction.below_minimum:
        flags.append("BELOW CODE MINIMUM (override)")
    if instruction.preset:
        flags.append(f"preset {instruction.preset}")
    return ", ".join(flags) or "-"


def _instruction_rows(instructions: Sequence[RetentionInstruction]) -> list[list[str]]:
    return [
        [i.category, str(i.version), i.rule.on_expiry, i.issued_by, _when(i.issued_at),
         _flags(i), describe_rule(i.rule)]
        for i in instructions
    ]


_INSTRUCTION_HEADERS = ("CATEGORY", "VERSION", "ON EXPIRY", "ISSUED BY", "ISSUED AT", "FLAGS",
                        "RETAIN")


def _print_instructions(ctx: Context, instructions: Sequence[RetentionInstruction],
                        as_json: bool, empty: str) -> None:
    if as_json:
        _dump(ctx.out, [_instruction_json(i) for i in instructions])
    elif not instructions:
        print(empty, file=ctx.out)
    else:
        _table(ctx.out, _INSTRUCTION_HEADERS, _instruction_rows(instructions))


# -- instructions ------------------------------------------------------------------------


def _show(args: argparse.Namespace, ctx: Context) -> int:
    retention = ctx.scope().retention
    if args.category is not None:
        current = [retention.get_instruction(args.category)]
    else:
        latest: dict[str, RetentionInstruction] = {}
        for instruction in retention.list_instructions():
            latest[instruction.category] = instruction
        current = [latest[c] for c in sorted(latest)]
    _print_instructions(ctx, current, args.json,
                        "no retention instructions: records are never due (see adopt-preset)")
    return 0


def _read_rule_file(name: str) -> RetentionRule:
    try:
        if name == "-":
            text = sys.stdin.read(MAX_RULE_FILE + 1)
        else:
            with Path(name).open(encoding="utf-8") as handle:
                text = handle.read(MAX_RULE_FILE + 1)
    except (OSError, UnicodeDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else "unreadable"
        raise InvalidInputError(f"cannot read the rule file: {reason}") from None
    if len(text) > MAX_RULE_FILE:
        raise InvalidInputError("the rule file is larger than 64 KiB")
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise InvalidInputError(
            f"the rule file is not JSON (line {exc.lineno}, column {exc.colno})"
        ) from None
    except RecursionError:
        raise InvalidInputError("the rule file nests too deeply") from None
    return rule_from_json(data)


def _rule_from_args(args: argparse.Namespace) -> RetentionRule:
    if args.rule_json is not None:
        if args.period is not None or args.trigger or args.on_expiry is not None:
            raise InvalidInputError(
                "give either --rule-json or --period/--trigger/--on-expiry, not both"
            )
        return _read_rule_file(args.rule_json)
    if args.period is None or not args.trigger:
        raise InvalidInputError("give --period and at least one --trigger, or --rule-json")
    period = parse_duration(args.period)
    return rule_from_json({
        "clauses": [{"kind": "after_events", "period": str(period), "events": args.trigger}],
        "on_expiry": args.on_expiry or "appraise",
    })


def _set(args: argparse.Namespace, ctx: Context) -> int:
    rule = _rule_from_args(args)
    retention = ctx.scope().retention
    instruction = retention.set_instruction(
        args.category, rule, override_reason=args.override_reason
    )
    if args.json:
        _dump(ctx.out, _instruction_json(instruction))
        return 0
    print(
        f"{instruction.category}: instruction version {instruction.version} recorded: "
        f"retain {describe_rule(instruction.rule)}; on expiry {instruction.rule.on_expiry}",
        file=ctx.out,
    )
    if instruction.below_minimum:
        print(
            "FLAGGED: shorter than the NHS Records Management Code minimum for this category; "
            "accepted on the override reason given",
            file=ctx.out,
        )
    print(
        f"records stored before this version keep their due dates until you run: {PROG} "
        f"retention recompute {instruction.category}",
        file=ctx.out,
    )
    return 0


def _adopt(args: argparse.Namespace, ctx: Context) -> int:
    adopted = ctx.scope().retention.adopt_preset(args.preset)
    if args.json:
        _dump(ctx.out, [_instruction_json(i) for i in adopted])
        return 0
    print(f"adopted {args.preset}: {len(adopted)} categories", file=ctx.out)
    _table(ctx.out, _INSTRUCTION_HEADERS, _instruction_rows(adopted))
    print(f"records stored before now keep their due dates until you run: {PROG} retention "
          "recompute CATEGORY (for each category that has records)", file=ctx.out)
    return 0


def _history(args: argparse.Namespace, ctx: Context) -> int:
    instructions = ctx.scope().retention.list_instructions(args.category)
    _print_instructions(ctx, instructions, args.json, "no retention instructions recorded")
    return 0


def _recompute(args: argparse.Namespace, ctx: Context) -> int:
    retention = ctx.scope().retention
    bar = ProgressBar("recomputing", stream=ctx.err)
    try:
        updated = retention.recompute_due_dates(args.category, progress=bar)
    finally:
        bar.close()
    print(f"{args.category}: recomputed the due dates of {updated} records", file=ctx.out)
    return 0


# -- holds -------------------------------------------------------------------------------


def _hold_scope(hold: Hold) -> str:
    if hold.whole_controller:
        return "whole controller"
    if hold.category is not None:
        return f"category {hold.category}"
    if hold.subject_ref is not None:
        return f"subject {hold.subject_ref}"
    return f"{len(hold.record_ids)} record(s): " + ", ".join(hold.record_ids)


def _holds_list(args: argparse.Namespace, ctx: Context) -> int:
    holds = ctx.scope().retention.list_holds(active_only=not args.all)
    if args.json:
        _dump(ctx.out, [h.model_dump(mode="json") for h in holds])
        return 0
    if not holds:
        print("no holds in force" if not args.all else "no holds", file=ctx.out)
        return 0
    rows = [
        [h.hold_id, h.kind, _hold_scope(h), h.placed_by, _when(h.placed_at),
         "in force" if h.active else f"released {_when(h.released_at)} by {h.released_by}",
         (h.reason or "").replace("\n", " ")]
        for h in holds
    ]
    _table(ctx.out, ("HOLD", "KIND", "SCOPE", "PLACED BY", "PLACED AT", "STATUS", "REASON"),
           rows)
    return 0


def _holds_place(args: argparse.Namespace, ctx: Context) -> int:
    subject: NHSNumber | HospitalNumber | None = None
    if args.nhs_number is not None:
        subject = NHSNumber(args.nhs_number)
    elif args.hospital_number is not None:
        subject = HospitalNumber(args.hospital_number)
    hold = ctx.scope().retention.place_hold(
        args.kind, reason=args.reason, subject=subject, record_ids=args.records or (),
        category=args.category, whole_controller=args.whole_controller,
        request_id=args.request_id,
    )
    if args.json:
        _dump(ctx.out, hold.model_dump(mode="json"))
    else:
        print(f"placed {hold.kind} hold {hold.hold_id} on {_hold_scope(hold)}", file=ctx.out)
    return 0


def _holds_release(args: argparse.Namespace, ctx: Context) -> int:
    hold = ctx.scope().retention.release_hold(args.hold_id, reason=args.reason)
    if args.json:
        _dump(ctx.out, hold.model_dump(mode="json"))
    else:
        print(f"released hold {hold.hold_id} ({hold.kind}, {_hold_scope(hold)})",
              file=ctx.out)
    return 0


# -- appraisal, approval, destruction ----------------------------------------------------


def _parse_day(text: str) -> dt.date:
    try:
        if len(text) != 10:
            raise ValueError(text)
        return dt.date.fromisoformat(text)
    except ValueError:
        raise InvalidInputError("--as-of must be a date written YYYY-MM-DD") from None


def _item_rows(items: Sequence[AppraisalItem], held: bool) -> list[list[str]]:
    rows = []
    for item in items:
        row = [item.record_id, item.category,
               "-" if item.instruction_version is None else str(item.instruction_version),
               _when(item.retain_until)]
        row.append(", ".join(item.hold_ids) if held else
                   ("standing destroy" if item.standing_destroy else "needs approval"))
        rows.append(row)
    return rows


def _print_appraisal(out: TextIO, appraisal: Appraisal) -> None:
    print(
        f"appraisal {appraisal.appraisal_id} as of {appraisal.as_of.isoformat()}: "
        f"{len(appraisal.due)} due, {len(appraisal.held)} held, "
        f"{len(appraisal.no_instruction)} without instruction",
        file=out,
    )
    sections: tuple[tuple[str, Sequence[AppraisalItem], str], ...] = (
        ("Due for destruction", appraisal.due, "ACTION"),
        ("Held (kept: a hold is in force)", appraisal.held, "HOLDS"),
    )
    for title, items, last in sections:
        print(f"\n{title}: {len(items)}", file=out)
        if items:
            _table(out, ("RECORD", "CATEGORY", "INSTRUCTION", "DUE", last),
                   _item_rows(items, held=last == "HOLDS"))
    print(f"\nNo instruction (kept, never due): {len(appraisal.no_instruction)}", file=out)
    if appraisal.no_instruction:
        _table(out, ("RECORD", "CATEGORY"),
               [[i.record_id, i.category] for i in appraisal.no_instruction])
    if appraisal.due:
        print(f"\nTo approve: {PROG} retention approve {appraisal.appraisal_id} "
              "[--record ID ...]", file=out)


def _appraise(args: argparse.Namespace, ctx: Context) -> int:
    as_of = _parse_day(args.as_of)
    retention = ctx.scope().retention
    bar = ProgressBar("appraising", stream=ctx.err)
    try:
        appraisal = retention.appraise(as_of, progress=bar)
    finally:
        bar.close()
    if args.json:
        _dump(ctx.out, appraisal.model_dump(mode="json"))
    else:
        _print_appraisal(ctx.out, appraisal)
    return 0


def _approve(args: argparse.Namespace, ctx: Context) -> int:
    approved = ctx.scope().retention.approve(
        args.appraisal_id, record_ids=args.records, note=args.note
    )
    if args.json:
        _dump(ctx.out, approved.model_dump(mode="json"))
        return 0
    count = len(approved.approved_record_ids or ())
    print(
        f"approved destroying {count} of {len(approved.due)} due records of appraisal "
        f"{approved.appraisal_id} (instruction {approved.approval_instruction_id})",
        file=ctx.out,
    )
    if count:
        print(f"To destroy: {PROG} retention destroy {approved.appraisal_id}", file=ctx.out)
    return 0


def _shard_args(args: argparse.Namespace) -> tuple[int, int]:
    if (args.shard is None) != (args.shards is None):
        raise InvalidInputError("give --shard and --shards together")
    if args.shard is None:
        return 0, 1
    try:
        shard, shards = int(args.shard), int(args.shards)
    except ValueError:
        raise InvalidInputError("--shard and --shards must be whole numbers") from None
    if not 0 <= shard < shards:
        raise InvalidInputError("--shard must be in 0..N-1 for --shards N")
    return shard, shards


def _report_json(report: DestructionReport) -> dict[str, Any]:
    data = report.model_dump(mode="json")
    data["counts"] = {k: len(data[k]) for k in (
        "destroyed", "already_destroyed", "held", "not_approved", "no_longer_due")}
    return data


def _destroy(args: argparse.Namespace, ctx: Context) -> int:
    shard, shards = _shard_args(args)
    retention = ctx.scope().retention
    bar = ProgressBar("destroying", stream=ctx.err)
    try:
        report = retention.destroy(args.appraisal_id, shard=shard, shards=shards,
                                   progress=bar)
    except KeyboardInterrupt:
        bar.close()
        print(f"{PROG}: interrupted: run the same command again to resume (records already "
              "destroyed are not destroyed twice)", file=ctx.err)
        return 130
    bar.close()
    if args.json:
        _dump(ctx.out, _report_json(report))
        return 0
    where = f" (shard {report.shard} of {report.shards})" if report.shards > 1 else ""
    out = ctx.out
    print(f"appraisal {report.appraisal_id}{where}:", file=out)
    print(f"  destroyed now:          {len(report.destroyed)}", file=out)
    print(f"  already destroyed:      {len(report.already_destroyed)}", file=out)
    print(f"  kept, held:             {len(report.held)}", file=out)
    print(f"  kept, not approved:     {len(report.not_approved)}", file=out)
    print(f"  kept, no longer due:    {len(report.no_longer_due)}", file=out)
    print(f"  subjects crypto-shredded: {report.subjects_shredded}", file=out)
    for label, record_ids in (("held", report.held), ("no longer due", report.no_longer_due)):
        for record_id in record_ids:
            print(f"  {label}: {record_id}", file=out)
    print(f"Evidence: {PROG} retention evidence --appraisal {report.appraisal_id}", file=out)
    return 0


def _evidence(args: argparse.Namespace, ctx: Context) -> int:
    evidence: list[DestructionEvidence] = ctx.scope().retention.list_evidence()
    if args.appraisal is not None:
        evidence = [e for e in evidence if e.appraisal_id == args.appraisal]
    if args.json:
        _dump(ctx.out, [e.model_dump(mode="json") for e in evidence])
        return 0
    if not evidence:
        print("no destruction evidence", file=ctx.out)
        return 0
    rows = [
        [e.record_id, e.category, e.status, e.reason,
         "-" if e.instruction_version is None else str(e.instruction_version),
         e.appraisal_id or "-", e.approved_by, _when(e.destroyed_at),
         (e.content_sha256 or "-")[:16]]
        for e in evidence
    ]
    _table(ctx.out, ("RECORD", "CATEGORY", "STATUS", "REASON", "INSTRUCTION", "APPRAISAL",
                     "APPROVED BY", "DESTROYED AT", "CONTENT SHA-256"), rows)
    return 0
