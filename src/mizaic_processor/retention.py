"""Controller-instructed retention: instructions, holds, appraisal, destruction, evidence.

Reached as ``scope.retention``. The controller sets retention per data category; nothing
is destroyed automatically: due records are appraised, a ``controller_admin`` approves
what is destroyed (or has given a standing ``destroy`` instruction for the category), and
every destruction leaves evidence. Holds always win. See ``docs/retention.md``.

Storage sees only coarse months: each record blob carries index tags ``cat`` (category
code), ``due`` (the month it falls due, ``9999-12`` if never), ``rs`` (``dated``,
``noinstr``, ``indef``, ``await``) and ``iv`` (the instruction version it was computed
under). Finding the records due by a date is one tag query whose cost grows with the
number due, not with the size of the store.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import threading
import time
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from mizaic_processor._core import ids
from mizaic_processor._core.retention import (
    NHS_RECORDS_CODE_2021,
    RetentionRule,
    compute_retain_until,
    due_bucket,
    is_shorter_than,
)
from mizaic_processor._core.validation import describe_validation_error
from mizaic_processor._destruction import (
    DestructionEvidence,
    destroy_record,
    list_evidence,
)
from mizaic_processor._docs import ControllerDocs
from mizaic_processor._ledger import Hold, HoldKind, check_note
from mizaic_processor._progress import Progress, check_progress, no_progress
from mizaic_processor._validation import check_record_ids, whole_number
from mizaic_processor.errors import (
    ConflictError,
    HoldError,
    IntegrityError,
    InvalidInputError,
    NotFoundError,
)
from mizaic_processor.models import Role

if TYPE_CHECKING:
    from mizaic_processor._scope import ControllerScope

__all__ = [
    "Appraisal",
    "AppraisalItem",
    "DestructionEvidence",
    "DestructionReport",
    "Retention",
    "RetentionInstruction",
    "RetentionRule",
]

NEVER = "9999-12"
PRESETS: Mapping[str, Mapping[str, RetentionRule]] = {
    "nhs-records-code-2021": NHS_RECORDS_CODE_2021
}
RETENTION = "retention/"
APPRAISALS = "appraisals/"
PAGE = 500
_ADMIN = frozenset({Role.CONTROLLER_ADMIN})
_INSTRUCTION_TTL = 30.0


class RetentionInstruction(BaseModel):
    """One version of a controller's retention instruction for a data category."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    category: str
    version: int
    rule: RetentionRule
    issued_by: str
    issued_at: dt.datetime
    below_minimum: bool = False
    preset: str | None = None
    override_reason: str | None = Field(default=None, repr=False)


class AppraisalItem(BaseModel):
    """A record in an appraisal. ``retain_until`` is exact (kept sealed in storage)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    record_id: str
    category: str
    instruction_version: int | None = None
    retain_until: dt.date | None = Field(default=None, repr=False)
    hold_ids: tuple[str, ...] = ()
    standing_destroy: bool = False


class Appraisal(BaseModel):
    """What is due for destruction as of a date, for a records manager to approve."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    appraisal_id: str
    as_of: dt.date
    created_by: str
    created_at: dt.datetime
    due: tuple[AppraisalItem, ...]
    held: tuple[AppraisalItem, ...]
    no_instruction: tuple[AppraisalItem, ...]
    approved_by: str | None = None
    approved_at: dt.datetime | None = None
    approval_instruction_id: str | None = None
    approved_record_ids: tuple[str, ...] | None = None

    def is_approved(self, record_id: str) -> bool:
        """Whether the controller approved destroying ``record_id`` in this appraisal."""
        if self.approved_at is None or self.approved_record_ids is None:
            return False
        return record_id in self.approved_record_ids


class DestructionReport(BaseModel):
    """What one :meth:`Retention.destroy` run did (of its shard)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    appraisal_id: str
    shard: int
    shards: int
    destroyed: tuple[str, ...]
    already_destroyed: tuple[str, ...]
    held: tuple[str, ...]
    not_approved: tuple[str, ...]
    no_longer_due: tuple[str, ...]
    subjects_shredded: int


def _tag_version(version: int) -> str:
    return f"{version:06d}"


class InstructionBook:
    """A controller's retention instructions, versioned, with a short-lived cache."""

    def __init__(self, docs: ControllerDocs) -> None:
        self._docs = docs
        self._cache: dict[str, tuple[float, RetentionInstruction | None]] = {}
        self._lock = threading.Lock()

    def history(self, category: str) -> list[RetentionInstruction]:
        out = []
        for name in self._docs.names(f"{RETENTION}{category}/"):
            doc = self._docs.get(name, what="retention instruction")
            try:
                out.append(RetentionInstruction.model_validate(
                    {**doc.public, "override_reason": doc.secret.get("override_reason")}
                ))
            except ValidationError:
                raise IntegrityError("stored data failed integrity verification") from None
        return out

    def current(self, category: str, *, fresh: bool = False) -> RetentionInstruction | None:
        now = time.monotonic()
        with self._lock:
            cached = self._cache.get(category)
        if cached is not None and not fresh and now - cached[0] < _INSTRUCTION_TTL:
            return cached[1]
        history = self.history(category)
        latest = history[-1] if history else None
        with self._lock:
            self._cache[category] = (now, latest)
        return latest

    def add(self, instruction: RetentionInstruction) -> RetentionInstruction:
        public = instruction.model_dump(mode="json", exclude={"override_reason"})
        self._docs.create(
            f"{RETENTION}{instruction.category}/{instruction.version:06d}", public,
            {"override_reason": instruction.override_reason}, what="retention instruction",
        )
        with self._lock:
            self._cache[instruction.category] = (time.monotonic(), instruction)
        return instruction

    def categories(self) -> list[str]:
        seen: list[str] = []
        for name in self._docs.names(RETENTION):
            category = name.split("/")[1]
            if category not in seen:
                seen.append(category)
        return seen

    def tags(self, category: str, events: Mapping[str, dt.date]) -> dict[str, str]:
        """The index tags a record of ``category`` with ``events`` carries."""
        instruction = self.current(category)
        if instruction is None:
            return {"cat": category, "due": NEVER, "rs": "noinstr", "iv": _tag_version(0)}
        due = compute_retain_until(instruction.rule, events)
        iv = _tag_version(instruction.version)
        if due.status == "due" and due.retain_until is not None:
            return {"cat": category, "due": due_bucket(due.retain_until), "rs": "dated",
                    "iv": iv}
        status = "indef" if due.status == "indefinite" else "await"
        return {"cat": category, "due": NEVER, "rs": status, "iv": iv}


class Retention:
    """Retention instructions, holds, appraisal and destruction for one controller scope.

    Changing anything (instructions, holds, approvals, destruction) needs a
    ``controller_admin``; every call is audited.
    """

    def __init__(self, scope: ControllerScope) -> None:
        self._scope = scope
        self._book: InstructionBook = scope._instructions

    def __repr__(self) -> str:
        return f"Retention(controller={self._scope.controller_id!r})"

    def _admin(self, what: str) -> None:
        self._scope._require(_ADMIN, what)

    # -- instructions --------------------------------------------------------------------

    def set_instruction(
        self, category: str, rule: RetentionRule, *, override_reason: str | None = None,
    ) -> RetentionInstruction:
        """Record a new version of the retention instruction for ``category``.

        History is kept: earlier versions stay readable with :meth:`list_instructions`.
        An instruction giving less than the NHS Records Management Code's minimum for a
        category the Code covers is refused unless ``override_reason`` is given; it is
        then accepted and flagged ``below_minimum``. Existing records keep their old
        due dates until :meth:`recompute_due_dates` runs.

        :raises InvalidInputError: on a bad category, rule or reason (nothing written).
        :raises AccessDeniedError: unless the actor is a ``controller_admin``.
        """
        self._admin("set retention instructions")
        category = ids.category(category)
        if not isinstance(rule, RetentionRule):
            raise InvalidInputError("rule must be a RetentionRule")
        override_reason = check_note(override_reason, "override reason")
        minimum = NHS_RECORDS_CODE_2021.get(category)
        below = minimum is not None and is_shorter_than(rule, minimum)
        if below and override_reason is None:
            raise InvalidInputError(
                "the instruction is shorter than the NHS Records Management Code minimum "
                "for this category; give override_reason to accept it anyway"
            )
        return self._add(category, rule, override_reason=override_reason, below=below)

    def _add(
        self, category: str, rule: RetentionRule, *, override_reason: str | None,
        below: bool, preset: str | None = None,
    ) -> RetentionInstruction:
        scope = self._scope
        for _attempt in range(5):
            current = self._book.current(category, fresh=True)
            instruction = RetentionInstruction(
                category=category,
                version=1 if current is None else current.version + 1,
                rule=rule,
                issued_by=scope.actor.id,
                issued_at=scope._clock(),
                below_minimum=below,
                preset=preset,
                override_reason=override_reason,
            )
            def add(instruction: RetentionInstruction = instruction) -> RetentionInstruction:
                return self._book.add(instruction)

            try:
                return scope._audited(
                    "retention.instruction", "U", f"retention:{category}:{instruction.version}",
                    add, write=True,
                )
            except ConflictError:
                continue
        raise ConflictError("retention instruction changed concurrently; try again")

    def adopt_preset(self, preset: str = "nhs-records-code-2021") -> list[RetentionInstruction]:
        """Adopt a named schedule: one new instruction version for each of its categories.

        Override single categories afterwards with :meth:`set_instruction`.

        :raises InvalidInputError: if the preset is unknown.
        :raises AccessDeniedError: unless the actor is a ``controller_admin``.
        """
        self._admin("set retention instructions")
        rules = PRESETS.get(preset) if isinstance(preset, str) else None
        if rules is None:
            raise InvalidInputError("unknown retention preset")
        return [
            self._add(category, rule, override_reason=None, below=False, preset=preset)
            for category, rule in rules.items()
        ]

    def get_instruction(self, category: str) -> RetentionInstruction:
        """The current instruction for ``category``.

        :raises NotFoundError: if the controller has given none (records of that
            category are then never due, and are reported as having no instruction).
        """
        self._admin("read retention instructions")
        category = ids.category(category)
        current = self._book.current(category, fresh=True)
        if current is None:
            raise NotFoundError("no retention instruction for that category")
        return current

    def list_instructions(self, category: str | None = None) -> list[RetentionInstruction]:
        """Every version of every instruction (or of one category), oldest first.

        :raises AccessDeniedError: unless the actor is a ``controller_admin``.
        """
        self._admin("read retention instructions")
        categories = [ids.category(category)] if category is not None else self._book.categories()
        return [i for c in categories for i in self._book.history(c)]

    def recompute_due_dates(
        self, category: str, *, progress: Progress = no_progress
    ) -> int:
        """Recompute the due month of every record of ``category`` computed under an
        older instruction version. Resumable: records already recomputed are not
        touched again. Decrypts each record's dated events, never its fields.

        :returns: how many records were updated.
        :raises NotFoundError: if the category has no instruction.
        :raises AccessDeniedError: unless the actor is a ``controller_admin``.
        """
        progress = check_progress(progress)
        self._admin("recompute due dates")
        instruction = self.get_instruction(category)
        scope = self._scope
        scope._emit("retention.recompute", "U", f"retention:{instruction.category}")[1].wait()
        version = _tag_version(instruction.version)
        query = f"\"cat\" = '{instruction.category}' AND \"iv\" < '{version}'"
        names = [name for name, _ in scope._container.find_by_tags(query)]
        for done, name in enumerate(names, start=1):
            record_id = _record_id_of(name)
            if record_id is None:
                continue
            events = scope._record_events(record_id)
            if events is not None:
                scope._container.set_tags(name, self._book.tags(instruction.category, events))
            progress(done, len(names))
        return len(names)

    # -- holds ---------------------------------------------------------------------------

    def place_hold(
        self,
        kind: HoldKind,
        *,
        reason: str,
        subject: Any = None,
        record_ids: Sequence[str] = (),
        category: str | None = None,
        whole_controller: bool = False,
        request_id: str | None = None,
    ) -> Hold:
        """Place a hold (``legal``, ``inquiry`` or ``access_request``). Held records are
        never destroyed, by any path, until every hold on them is released.

        Name exactly one scope: a subject, record ids, a category, or the whole
        controller.

        :raises InvalidInputError: on bad input (nothing written).
        :raises NotFoundError: if the subject has no records here.
        :raises AccessDeniedError: unless the actor is a ``controller_admin``.
        """
        self._admin("place holds")
        from mizaic_processor._validation import check_subject as _check_subject

        if kind not in ("legal", "inquiry", "access_request"):
            raise InvalidInputError("kind must be legal, inquiry or access_request")
        reason = check_note(reason, "reason", required=True) or ""
        records = check_record_ids(record_ids)
        if not isinstance(whole_controller, bool):  # "no" would be truthy: a wider hold
            raise InvalidInputError("whole_controller must be True or False")
        if category is not None:
            category = ids.category(category)
        if request_id is not None:
            request_id = ids.opaque_id(request_id, "request id")
        chosen = sum([subject is not None, bool(records), category is not None,
                      whole_controller])
        if chosen != 1:
            raise InvalidInputError("name exactly one of subject, record_ids, category, "
                                    "whole_controller")
        skid = None
        if subject is not None:
            skid = self._scope._keys.find_subject(_check_subject(subject))
            if skid is None:
                raise NotFoundError("no records of that subject here")
        hold = Hold(
            hold_id=ids.new_opaque_id("h"), kind=kind, placed_by=self._scope.actor.id,
            placed_at=self._scope._clock(), subject_ref=skid, record_ids=records,
            category=category, whole_controller=bool(whole_controller),
            request_id=request_id, reason=reason,
        )
        return self._scope._audited(
            "hold.place", "C", f"hold:{hold.hold_id}",
            lambda: self._scope._ledger.place_hold(hold), write=True,
        )

    def release_hold(self, hold_id: str, *, reason: str) -> Hold:
        """Release a hold, recording who, when and why.

        :raises NotFoundError: if there is no such hold.
        :raises AccessDeniedError: unless the actor is a ``controller_admin``.
        """
        self._admin("release holds")
        hold_id = ids.opaque_id(hold_id, "hold id")
        reason = check_note(reason, "reason", required=True) or ""
        scope = self._scope
        return scope._audited(
            "hold.release", "U", f"hold:{hold_id}",
            lambda: scope._ledger.release_hold(
                hold_id, released_by=scope.actor.id, released_at=scope._clock(),
                reason=reason,
            ),
            write=True,
        )

    def list_holds(self, *, active_only: bool = True) -> list[Hold]:
        """The register of holds (active ones by default).

        :raises AccessDeniedError: unless the actor is a ``controller_admin``.
        """
        self._admin("list holds")
        return list(self._scope._ledger.list_holds(active_only=active_only))

    # -- appraisal -----------------------------------------------------------------------

    def appraise(self, as_of: dt.date, *, progress: Progress = no_progress) -> Appraisal:
        """List what is due for destruction on ``as_of``, and store it for approval.

        Finds candidates with one tag query (work grows with the records due, not the
        store), then confirms each exact due date from its sealed events under the
        current instruction. Held records and records without an instruction are listed
        apart. Destroys nothing.

        :raises InvalidInputError: if ``as_of`` is not a date.
        :raises AccessDeniedError: unless the actor is a ``controller_admin``.
        """
        progress = check_progress(progress)
        self._admin("appraise records")
        if not isinstance(as_of, dt.date) or isinstance(as_of, dt.datetime):
            raise InvalidInputError("as_of must be a date")
        scope = self._scope
        due: list[AppraisalItem] = []
        held: list[AppraisalItem] = []
        missing: list[AppraisalItem] = []
        holds = scope._ledger.active_holds()
        candidates = list(
            scope._container.find_by_tags(f"\"due\" <= '{due_bucket(as_of)}'")
        )
        stale = [
            (name, tags) for name, tags in scope._container.find_by_tags("\"rs\" = 'noinstr'")
        ]
        total = len(candidates) + len(stale)
        for done, (name, _tags) in enumerate(candidates + stale, start=1):
            progress(done, total)
            record_id = _record_id_of(name)
            if record_id is None:
                continue
            loaded = scope._record_category_and_events(record_id)
            if loaded is None:
                continue
            category, events = loaded
            instruction = self._book.current(category)
            if instruction is None:
                missing.append(AppraisalItem(record_id=record_id, category=category))
                continue
            if done > len(candidates):
                # tagged before its category had an instruction: re-tag it now, so the
                # next appraisal finds it through the due-month query alone
                scope._container.set_tags(name, self._book.tags(category, events))
            result = compute_retain_until(instruction.rule, events)
            if not result.is_due(as_of):
                continue
            covering = tuple(
                h.hold_id for h in holds if h.covers(record_id, record_id[1:27], category)
            )
            item = AppraisalItem(
                record_id=record_id, category=category,
                instruction_version=instruction.version, retain_until=result.retain_until,
                hold_ids=covering, standing_destroy=instruction.rule.on_expiry == "destroy",
            )
            (held if covering else due).append(item)
        appraisal = Appraisal(
            appraisal_id=ids.new_opaque_id("a"), as_of=as_of, created_by=scope.actor.id,
            created_at=scope._clock(), due=tuple(due), held=tuple(held),
            no_instruction=tuple(missing),
        )
        scope._audited(
            "retention.appraise", "E", f"appraisal:{appraisal.appraisal_id}",
            lambda: self._store(appraisal, etag=None), write=True,
        )
        return appraisal

    def _store(self, appraisal: Appraisal, *, etag: str | None) -> str:
        docs = self._scope._docs
        public = {"appraisal_id": appraisal.appraisal_id, "as_of": appraisal.as_of.isoformat(),
                  "due": len(appraisal.due), "held": len(appraisal.held),
                  "approved": appraisal.approved_at is not None}
        secret = appraisal.model_dump(mode="json")
        name = APPRAISALS + appraisal.appraisal_id
        if etag is None:
            return docs.create(name, public, secret, what="appraisal")
        return docs.replace(name, public, secret, etag=etag, what="appraisal")

    def get_appraisal(self, appraisal_id: str) -> Appraisal:
        """A stored appraisal.

        :raises NotFoundError: if there is no such appraisal.
        :raises AccessDeniedError: unless the actor is a ``controller_admin``.
        """
        self._admin("read appraisals")
        return self._load(appraisal_id)[0]

    def _load(self, appraisal_id: str) -> tuple[Appraisal, str]:
        aid = ids.opaque_id(appraisal_id, "appraisal id")
        doc = self._scope._docs.get(APPRAISALS + aid, what="appraisal")
        try:
            return Appraisal.model_validate(doc.secret), doc.etag
        except ValidationError:
            raise IntegrityError("stored data failed integrity verification") from None

    def list_appraisals(self) -> list[str]:
        """Ids of the stored appraisals."""
        self._admin("read appraisals")
        return [n.removeprefix(APPRAISALS) for n in self._scope._docs.names(APPRAISALS)]

    def approve(
        self, appraisal_id: str, *, record_ids: Sequence[str] | None = None,
        note: str | None = None,
    ) -> Appraisal:
        """Approve destroying an appraisal's due records: all of them, or ``record_ids``.

        Recorded as a ``destruction`` instruction in the controller's ledger. Held
        records cannot be approved.

        :raises InvalidInputError: if a record id is not among the appraisal's due ones,
            or nothing would be approved (no due records, or ``record_ids`` empty).
        :raises ConflictError: if the appraisal was already approved.
        :raises AccessDeniedError: unless the actor is a ``controller_admin``.
        """
        self._admin("approve destruction")
        chosen: tuple[str, ...] | None = None
        if record_ids is not None:
            chosen = check_record_ids(record_ids)
        note = check_note(note)
        appraisal, etag = self._load(appraisal_id)
        due_ids = {item.record_id for item in appraisal.due}
        if chosen is not None and not set(chosen) <= due_ids:
            raise InvalidInputError("only records listed as due (and not held) "
                                    "can be approved")
        if appraisal.approved_at is not None:
            raise ConflictError("this appraisal is already approved")
        scope = self._scope
        if chosen is None:
            chosen = tuple(sorted(due_ids))
        if not chosen:
            # an instruction with no record ids is not limited to any record: approving
            # nothing must not leave a destruction instruction that covers everything
            raise InvalidInputError("there are no due records to approve")
        instruction_id = ids.new_opaque_id("i")
        now = scope._clock()
        approved = appraisal.model_copy(update={
            "approved_by": scope.actor.id, "approved_at": now,
            "approval_instruction_id": instruction_id,
            "approved_record_ids": chosen,
        })

        def run() -> None:
            # the instruction is written after the audit event too (it used to be
            # written before it, unaudited)
            scope._ledger.create_instruction(
                "destruction", issued_by=scope.actor.id, issued_at=now,
                record_ids=chosen, note=note, instruction_id=instruction_id,
                appraisal_id=appraisal.appraisal_id,
            )
            self._store(approved, etag=etag)

        scope._audited(
            "retention.approve", "U", f"appraisal:{appraisal.appraisal_id}", run,
            write=True, policy=instruction_id,
        )
        return approved

    def destroy(
        self,
        appraisal_id: str,
        *,
        shard: int = 0,
        shards: int = 1,
        progress: Progress = no_progress,
    ) -> DestructionReport:
        """Destroy what the appraisal approved (or what a standing ``destroy``
        instruction covers) and is still due and unheld, leaving evidence.

        Resumable and idempotent: killed half-way and run again, every approved record
        ends destroyed exactly once with one evidence entry. Several workers can share
        one appraisal with disjoint ``shard`` numbers out of ``shards``.

        :raises InvalidInputError: if the shard numbers are out of range.
        :raises AccessDeniedError: unless the actor is a ``controller_admin``.
        """
        progress = check_progress(progress)
        self._admin("destroy records")
        whole_number(shards, 1, 10_000, "shard must be in 0..shards-1")
        whole_number(shard, 0, shards - 1, "shard must be in 0..shards-1")
        appraisal, _ = self._load(appraisal_id)
        scope = self._scope
        report: dict[str, list[str]] = {k: [] for k in (
            "destroyed", "already_destroyed", "held", "not_approved", "no_longer_due")}
        shredded = 0
        mine = [
            i for i in appraisal.due + appraisal.held if _shard_of(i.record_id, shards) == shard
        ]
        for done, item in enumerate(mine, start=1):
            progress(done, len(mine))
            record_id = item.record_id
            instruction = self._book.current(item.category, fresh=item.standing_destroy)
            standing = (
                item.standing_destroy and instruction is not None
                and instruction.rule.on_expiry == "destroy"
            )
            if not (appraisal.is_approved(record_id) or standing):
                report["not_approved"].append(record_id)
                continue
            loaded = scope._record_category_and_events(record_id)
            still_due = loaded is None or (
                instruction is not None
                and compute_retain_until(instruction.rule, loaded[1]).is_due(appraisal.as_of)
            )
            if not still_due:
                report["no_longer_due"].append(record_id)
                continue
            try:
                outcome = destroy_record(
                    scope, record_id, reason="retention",
                    approved_by=appraisal.approved_by or "standing-instruction",
                    instruction_id=appraisal.approval_instruction_id,
                    instruction_version=instruction.version if instruction else None,
                    appraisal_id=appraisal.appraisal_id,
                )
            except HoldError:
                report["held"].append(record_id)
                continue
            except NotFoundError:
                report["already_destroyed"].append(record_id)
                continue
            if not outcome.destroyed_now:
                report["already_destroyed"].append(record_id)
                continue
            report["destroyed"].append(record_id)
            shredded += outcome.subject_shredded
        return DestructionReport(
            appraisal_id=appraisal.appraisal_id, shard=shard, shards=shards,
            subjects_shredded=shredded, **{k: tuple(v) for k, v in report.items()},
        )

    def list_evidence(self) -> list[DestructionEvidence]:
        """Every destruction's evidence stub (no patient identifier in any).

        :raises AccessDeniedError: unless the actor is a ``controller_admin``.
        """
        self._admin("list destruction evidence")
        return list_evidence(self._scope._docs)


def _record_id_of(name: str) -> str | None:
    parts = name.split("/")
    if len(parts) != 3 or parts[0] != "records":
        return None
    return ids.record_id_of_name(parts[1], parts[2])


def _shard_of(record_id: str, shards: int) -> int:
    return int.from_bytes(hashlib.sha256(record_id.encode()).digest()[:4], "big") % shards


def rule_from_json(data: object) -> RetentionRule:
    """Parse a rule from its JSON form (CLI input).

    :raises InvalidInputError: if it is not a valid rule.
    """
    try:
        return RetentionRule.model_validate(data)
    except ValidationError as exc:
        raise InvalidInputError(describe_validation_error(exc)) from None


