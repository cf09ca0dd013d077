"""The controller's instruction ledger and its holds register.

Anything destructive or outbound cites an :class:`Instruction` recorded here by a
``controller_admin``: who instructed, when, what, and under which retention instruction
version. Holds (legal, inquiry, an open access request) block every destruction path
until released; placing and releasing a hold is recorded with who, when and why.
"""

from __future__ import annotations

import datetime as dt
import time
from collections.abc import Iterator, Sequence
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from mizaic_processor._core import ids
from mizaic_processor._docs import ControllerDocs
from mizaic_processor._validation import plain_text
from mizaic_processor.errors import InvalidInputError, NotFoundError

__all__ = ["Hold", "HoldKind", "Instruction", "InstructionAction", "Ledger"]

InstructionAction = Literal[
    "destruction", "deletion", "erasure", "rectification", "restriction",
    "lift_restriction", "export", "disclosure",
]
HoldKind = Literal["legal", "inquiry", "access_request"]
_ACTIONS: frozenset[str] = frozenset(InstructionAction.__args__)  # type: ignore[attr-defined]
_HOLD_KINDS: frozenset[str] = frozenset(HoldKind.__args__)  # type: ignore[attr-defined]
INSTRUCTIONS = "instructions/"
HOLDS = "holds/"
MAX_NOTE = 4000
_HOLD_REFRESH = 30.0


def check_note(note: object, what: str = "note", *, required: bool = False) -> str | None:
    """Validate free text (kept encrypted): at most 4000 characters, no control
    characters but tab and line breaks.

    :raises InvalidInputError: if malformed, or missing when required.
    """
    if note is None:
        if required:
            raise InvalidInputError(f"a {what} is required")
        return None
    if not isinstance(note, str) or not note.strip() or len(note) > MAX_NOTE:
        raise InvalidInputError(f"invalid {what}")
    if not plain_text(note):  # no control characters, no lone surrogates
        raise InvalidInputError(f"invalid {what}")
    return note


class Instruction(BaseModel):
    """A documented instruction of the controller (UK GDPR Art 28(3)(a))."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    instruction_id: str
    action: InstructionAction
    issued_by: str
    issued_at: dt.datetime
    subject_ref: str | None = None
    record_ids: tuple[str, ...] = ()
    note: str | None = Field(default=None, repr=False)
    #: set on the destruction instruction that records an appraisal's approval: it
    #: authorises that appraisal's destruction run only, never a direct deletion
    appraisal_id: str | None = None


class Hold(BaseModel):
    """A hold on a subject, records, a category or the whole controller."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    hold_id: str
    kind: HoldKind
    placed_by: str
    placed_at: dt.datetime
    subject_ref: str | None = None
    record_ids: tuple[str, ...] = ()
    category: str | None = None
    whole_controller: bool = False
    request_id: str | None = None
    reason: str | None = Field(default=None, repr=False)
    released_by: str | None = None
    released_at: dt.datetime | None = None
    release_reason: str | None = Field(default=None, repr=False)

    @property
    def active(self) -> bool:
        """Whether the hold is still in force."""
        return self.released_at is None

    def covers(self, record_id: str, skid: str, category: str) -> bool:
        """Whether this hold applies to that record."""
        return self.active and (
            self.whole_controller
            or record_id in self.record_ids
            or (self.subject_ref is not None and self.subject_ref == skid)
            or (self.category is not None and self.category == category)
        )


class Ledger:
    """Instructions and holds of one controller, stored as sealed controller documents."""

    def __init__(self, docs: ControllerDocs) -> None:
        self._docs = docs
        self._hold_cache: dict[str, tuple[float, Hold]] = {}

    # -- instructions ----------------------------------------------------------------------

    def create_instruction(
        self,
        action: str,
        *,
        issued_by: str,
        issued_at: dt.datetime,
        subject_ref: str | None = None,
        record_ids: Sequence[str] = (),
        note: str | None = None,
        instruction_id: str | None = None,
        appraisal_id: str | None = None,
    ) -> Instruction:
        """Store a new instruction (under ``instruction_id`` when the caller drew it
        beforehand, to cite it in the audit event that precedes this write)."""
        if action not in _ACTIONS:
            raise InvalidInputError("unknown instruction action")
        instruction = Instruction(
            instruction_id=instruction_id or ids.new_opaque_id("i"),
            action=action,
            issued_by=issued_by,
            issued_at=issued_at,
            subject_ref=subject_ref,
            record_ids=tuple(record_ids),
            note=check_note(note),
            appraisal_id=appraisal_id,
        )
        public = instruction.model_dump(mode="json", exclude={"note"})
        self._docs.create(INSTRUCTIONS + instruction.instruction_id, public,
                          {"note": instruction.note}, what="instruction")
        return instruction

    def get_instruction(self, instruction_id: str) -> Instruction:
        """:raises NotFoundError: if there is no such instruction."""
        iid = ids.opaque_id(instruction_id, "instruction id")
        doc = self._docs.get(INSTRUCTIONS + iid, what="instruction")
        return Instruction.model_validate({**doc.public, "note": doc.secret.get("note")})

    def require(
        self, instruction_id: object, actions: frozenset[str], *, record_id: str | None = None,
        subject_ref: str | None = None,
    ) -> Instruction:
        """The cited instruction, checked to authorise this action on this target.

        :raises InvalidInputError: if the id is malformed.
        :raises NotFoundError: if there is no such instruction in the ledger.
        :raises AccessDeniedError: via the caller if it does not authorise the action.
        """
        if not isinstance(instruction_id, str):
            raise InvalidInputError("an instruction_id from the controller's ledger is required")
        instruction = self.get_instruction(instruction_id)
        if instruction.action not in actions or instruction.appraisal_id is not None:
            # an approval's instruction is used only by its appraisal's destruction run
            # (one left by an approval that failed after writing it must authorise nothing)
            raise NotFoundError("no instruction of that kind with that id")
        if record_id is not None and instruction.record_ids and (
            record_id not in instruction.record_ids
        ):
            raise NotFoundError("the instruction does not cover that record")
        if subject_ref is not None and instruction.subject_ref not in (None, subject_ref):
            raise NotFoundError("the instruction does not cover that subject")
        if record_id is not None and instruction.subject_ref is not None and (
            record_id[1:27] != instruction.subject_ref
        ):
            raise NotFoundError("the instruction does not cover that record")
        return instruction

    def list_instructions(self) -> Iterator[Instruction]:
        for name in self._docs.names(INSTRUCTIONS):
            yield self.get_instruction(name.removeprefix(INSTRUCTIONS))

    # -- holds ---------------------------------------------------------------------------

    def place_hold(self, hold: Hold) -> Hold:
        if hold.kind not in _HOLD_KINDS:
            raise InvalidInputError("unknown hold kind")
        public = hold.model_dump(mode="json", exclude={"reason", "release_reason"})
        self._docs.create(HOLDS + hold.hold_id, public, {"reason": hold.reason}, what="hold")
        return hold

    def get_hold(self, hold_id: str) -> tuple[Hold, str]:
        hid = ids.opaque_id(hold_id, "hold id")
        doc = self._docs.get(HOLDS + hid, what="hold")
        hold = Hold.model_validate(
            {**doc.public, "reason": doc.secret.get("reason"),
             "release_reason": doc.secret.get("release_reason")}
        )
        return hold, doc.etag

    def release_hold(
        self, hold_id: str, *, released_by: str, released_at: dt.datetime, reason: str
    ) -> Hold:
        hold, etag = self.get_hold(hold_id)
        if not hold.active:
            return hold
        released = hold.model_copy(
            update={"released_by": released_by, "released_at": released_at,
                    "release_reason": reason}
        )
        public = released.model_dump(mode="json", exclude={"reason", "release_reason"})
        self._docs.replace(
            HOLDS + hold.hold_id, public,
            {"reason": hold.reason, "release_reason": reason}, etag=etag, what="hold",
        )
        self._hold_cache[HOLDS + hold.hold_id] = (time.monotonic(), released)
        return released

    def list_holds(self, *, active_only: bool = False) -> Iterator[Hold]:
        for name in self._docs.names(HOLDS):
            hold, _ = self.get_hold(name.removeprefix(HOLDS))
            if hold.active or not active_only:
                yield hold

    def active_holds(self) -> list[Hold]:
        """Every active hold: one listing, plus a read of each hold not seen in the last
        30 seconds. A release is final, so released holds are never read again; a hold
        released elsewhere in the last 30 seconds may still count as active here (the
        safe direction). A newly placed hold always counts at once.
        """
        active = []
        now = time.monotonic()
        for name in self._docs.names(HOLDS):
            cached = self._hold_cache.get(name)
            if cached is None or (cached[1].active and now - cached[0] > _HOLD_REFRESH):
                hold, _ = self.get_hold(name.removeprefix(HOLDS))
                self._hold_cache[name] = (now, hold)
            else:
                hold = cached[1]
            if hold.active:
                active.append(hold)
        return active

    def holds_covering(self, record_id: str, category: str) -> list[Hold]:
        """Active holds that cover the record (checked afresh on every call)."""
        skid = record_id[1:27]
        return [h for h in self.active_holds() if h.covers(record_id, skid, category)]
