"""Retention end to end, as a trust's records manager runs it, against a throw-away Azurite.

Run it with::

    .venv/bin/python -m mizaic_processor.testing run -- \
        .venv/bin/python examples/retention_workflow.py

The ``run`` command starts Azurite, sets ``MIZAIC_CONNECTION_STRING`` and
``MIZAIC_REGION=uksouth`` for this script, and removes Azurite's data afterwards.

What it shows:

1. The records manager adopts the NHS Records Management Code of Practice schedule as the
   trust's retention instructions, then instructs one category (maternity) for longer.
2. A product service stores records in 2024, each with the dated events the schedule reads
   (end of treatment, date of birth, end of care, death). The clock is injected, so the
   script can then move it forward to 2034 without waiting ten years.
3. A legal hold is placed on one patient (a claim is expected).
4. In 2034 the records manager appraises: what is due, what is held, what has no
   instruction. Nothing has been destroyed by reaching its date.
5. One patient came back for treatment in 2030: the new treatment restarts the clock, and
   the record is no longer due.
6. The records manager approves the appraisal; destruction runs (with a progress callback),
   leaves one evidence entry per record and crypto-shreds patients with no records left.
7. The evidence is printed: record id, category, instruction version, appraisal, who
   approved, when, and a hash of the destroyed document. No patient identifier.

The patients are made up (943 476 5919 is a test NHS number; the others are hospital
numbers). Exit status: 0 when every check passes, 1 when one fails, 2 without the environment.
"""

from __future__ import annotations

import datetime as dt
import os
import sys

from mizaic_processor import (
    Actor,
    HoldError,
    HospitalNumber,
    LocalKeyring,
    NHSNumber,
    NotFoundError,
    Processor,
    RetentionRule,
)

OPERATOR = Actor.processor_operator("mizaic-support-1")
SERVICE = Actor.service("edms-api")
ADMIN = Actor.controller_admin("records-manager.rxh")
CONTROLLER = "rxh"

STORED_ON = dt.datetime(2024, 3, 4, 9, 0, tzinfo=dt.UTC)
APPRAISED_ON = dt.datetime(2034, 4, 1, 9, 0, tzinfo=dt.UTC)
D = dt.date


class Clock:
    """The processor's clock: the script moves it forward instead of waiting."""

    def __init__(self, now: dt.datetime) -> None:
        self.now = now

    def __call__(self) -> dt.datetime:
        return self.now


def check(ok: bool, what: str) -> bool:
    print(f"  [{'ok' if ok else 'FAILED'}] {what}")
    return ok


def main() -> int:
    connection_string = os.environ.get("MIZAIC_CONNECTION_STRING")
    region = os.environ.get("MIZAIC_REGION")
    if not connection_string or not region:
        print(
            "Set MIZAIC_CONNECTION_STRING and MIZAIC_REGION, or run me with\n"
            "  python -m mizaic_processor.testing run -- python examples/retention_workflow.py",
            file=sys.stderr,
        )
        return 2
    clock = Clock(STORED_ON)
    with Processor.from_connection_string(
        connection_string, region=region, keyring=LocalKeyring.generate(), clock=clock
    ) as processor:
        ok = run(processor, clock)
    print()
    print("All checks passed." if ok else "A CHECK FAILED (see above).")
    return 0 if ok else 1


def run(processor: Processor, clock: Clock) -> bool:
    ok = True
    processor.register_controller(CONTROLLER, name="Example Hospitals NHS Trust",
                                  actor=OPERATOR)
    admin = processor.tenant(CONTROLLER, actor=ADMIN)
    edms = processor.tenant(CONTROLLER, actor=SERVICE)

    print(f"1. Instructions ({clock.now.date()})")
    adopted = admin.retention.adopt_preset("nhs-records-code-2021")
    print(f"   adopted the NHS Records Management Code schedule: {len(adopted)} categories")
    longer = RetentionRule.after("P30Y", "end_of_care")  # longer than the Code's 25 years
    maternity = admin.retention.set_instruction("maternity", longer)
    print(f"   maternity: version {maternity.version}, 30 years after the end of care")
    ok &= check(not maternity.below_minimum, "a longer period needs no override")

    print("2. The EDMS stores records, each with its dated events")
    adult = edms.create_record(
        NHSNumber("943 476 5919"), category="adult",
        fields={"specialty": "orthopaedics", "summary": "knee arthroscopy"},
        events={"end_of_treatment": D(2016, 2, 1)},
        content=b"%PDF-1.7 scanned operation note", content_type="application/pdf",
    )
    returning = edms.create_record(
        HospitalNumber("RXH-100234"), category="adult",
        fields={"specialty": "cardiology"}, events={"last_treatment": D(2015, 6, 30)},
    )
    child = edms.create_record(
        HospitalNumber("RXH-200871"), category="child", fields={"specialty": "paediatrics"},
        events={"date_of_birth": D(2008, 9, 12), "end_of_treatment": D(2025, 11, 3)},
    )  # 17 at the end of treatment: kept until the 26th birthday, 2034-09-12
    birth = edms.create_record(
        HospitalNumber("RXH-300412"), category="maternity", fields={"unit": "midwifery"},
        events={"end_of_care": D(2003, 5, 20)},  # under the trust's 30 years: 2033-05-20
    )
    claim = edms.create_record(
        HospitalNumber("RXH-400555"), category="adult", fields={"specialty": "surgery"},
        events={"end_of_treatment": D(2017, 1, 9)},
    )
    research = edms.create_record(
        HospitalNumber("RXH-500999"), category="research_cohort", fields={"study": "x"},
        events={"last_seen": D(2001, 1, 1)},
    )
    print("   6 records stored")

    print("3. A legal hold on one patient (a claim is expected)")
    hold = admin.retention.place_hold(
        "legal", reason="Letter of claim expected, ref LC/2024/31",
        subject=HospitalNumber("RXH-400555"),
    )
    print(f"   hold {hold.hold_id} placed by {hold.placed_by}")

    clock.now = dt.datetime(2030, 2, 14, 10, 0, tzinfo=dt.UTC)
    print(f"4. {clock.now.date()}: one patient comes back; the new treatment is recorded")
    current = edms.get_record(returning.record_id)
    edms.update_record(returning.record_id, etag=current.etag,
                       events={"last_treatment": D(2030, 2, 14)})

    clock.now = APPRAISED_ON
    as_of = APPRAISED_ON.date()
    print(f"5. {as_of}: the records manager appraises")
    appraisal = admin.retention.appraise(as_of)
    for title, items in (("due", appraisal.due), ("held", appraisal.held),
                         ("no instruction", appraisal.no_instruction)):
        for item in items:
            when = f"due {item.retain_until}" if item.retain_until else "never due"
            version = item.instruction_version
            print(f"   {title:15} {item.record_id}  {item.category:16} {when}  "
                  f"{f'instruction v{version}' if version else 'no instruction'}")
    due = {i.record_id for i in appraisal.due}
    ok &= check(due == {adult.record_id, birth.record_id},
                "due: the adult record (2024) and the maternity record (2033)")
    ok &= check(returning.record_id not in due, "the returning patient's clock restarted")
    ok &= check(child.record_id not in due, "the child's record is kept to the 26th birthday")
    ok &= check([i.record_id for i in appraisal.held] == [claim.record_id],
                "the record under a legal hold is listed apart, as held")
    ok &= check([i.record_id for i in appraisal.no_instruction] == [research.record_id],
                "a category without an instruction is reported, never due")
    ok &= check(edms.get_record(adult.record_id).category == "adult",
                "reaching its date destroyed nothing")

    print("6. The records manager approves; destruction runs")
    approved = admin.retention.approve(appraisal.appraisal_id,
                                       note="Records committee, 1 April 2034")
    report = admin.retention.destroy(
        appraisal.appraisal_id,
        progress=lambda done, total: print(f"   destroying {done}/{total}"),
    )
    print(f"   destroyed {len(report.destroyed)}, held {len(report.held)}, "
          f"not approved {len(report.not_approved)}, "
          f"patients crypto-shredded {report.subjects_shredded}")
    ok &= check(set(report.destroyed) == due, "exactly the approved records were destroyed")
    try:
        edms.get_record(adult.record_id)
        ok &= check(False, "a destroyed record is gone")
    except NotFoundError:
        ok &= check(True, "a destroyed record is gone")
    deletion = admin.create_instruction("deletion", record_ids=[claim.record_id])
    try:
        admin.delete_record(claim.record_id, instruction_id=deletion.instruction_id)
        ok &= check(False, "the hold refuses a direct delete")
    except HoldError:
        ok &= check(True, "the hold refuses a direct delete as well")
    again = admin.retention.destroy(appraisal.appraisal_id)
    ok &= check(not again.destroyed and set(again.already_destroyed) == due,
                "running destruction again destroys nothing twice")

    print("7. Destruction evidence (no patient identifier in it)")
    evidence = admin.retention.list_evidence()
    for entry in evidence:
        print(f"   {entry.record_id}  {entry.category:10} instruction v"
              f"{entry.instruction_version}  appraisal {entry.appraisal_id}")
        print(f"      approved by {entry.approved_by} (instruction {entry.instruction_id}), "
              f"destroyed {entry.destroyed_at}, status {entry.status}, document sha256 "
              f"{(entry.content_sha256 or '-')[:16]}")
    ok &= check(len(evidence) == len(due) and all(e.status == "destroyed" for e in evidence),
                "one evidence entry per destroyed record")
    ok &= check(all(e.approved_by == ADMIN.id and
                    e.instruction_id == approved.approval_instruction_id for e in evidence),
                "each on the records manager's recorded approval")
    return ok


if __name__ == "__main__":
    sys.exit(main())
