"""Subject requests end to end, against a throw-away local Azurite.

Run it with::

    .venv/bin/python -m mizaic_processor.testing run -- \
        .venv/bin/python examples/subject_requests.py

The ``run`` command starts Azurite (blob and queue services), sets
``MIZAIC_CONNECTION_STRING`` and ``MIZAIC_REGION=uksouth`` for this script, and removes
Azurite's data afterwards.

What it shows:

1. Mizaic support (a ``processor_operator``) registers a trust and routes its notifications
   to an Azure Storage queue. A product service stores two records for a patient.
2. A subject access request reaches Mizaic by email. Support records it; it is stored sealed
   and forwarded at once. The queue receives an opaque notification: ids, kind and dates,
   never the patient's number, contact details or words. Because the request plainly names
   an NHS number the trust holds, an automatic ``access_request`` hold is placed at once.
3. The trust's data protection officer (a ``controller_admin``) reads the details through its
   own scope (the only path to them), acknowledges, asks for proof of identity (the clock
   stops), receives it (the clock restarts afresh) and sees the due date move.
4. Meanwhile an erasure request for the same patient is refused by the hold.
5. The DPO instructs the access export: a ZIP (JSON, a FHIR R4 Bundle, the documents) written
   to a file of the DPO's own; then completes the request, which releases the hold.
6. Mizaic reports a personal data breach to the trust; the notice arrives on the queue.
7. A court order obliges Mizaic to disclose a patient's records: one explicit, recorded and
   audited call (purpose ``HLEGAL``), with the trust notified through its queue.
8. The trust also receives the sealed heads of its audit chains (checkpoints) on the queue.

The clock is injected, so the statutory dates are the same on every run. The patient is
made up: 943 476 5919 is a well-known test NHS number, and the requester is invented.
Exit status: 0 when every check passes, 1 when one fails, 2 without the environment.
"""

from __future__ import annotations

import base64
import contextlib
import datetime as dt
import json
import os
import sys
import tempfile
import zipfile
from pathlib import Path
from typing import Any

from azure.storage.queue import QueueClient

from mizaic_processor import (
    AccessDeniedError,
    Actor,
    HoldError,
    LocalKeyring,
    NHSNumber,
    Processor,
    QueueRoute,
)

CONTROLLER = "rj1"
QUEUE = "rj1-notifications"
OPERATOR = Actor.processor_operator("mizaic-support-1")
SERVICE = Actor.service("edms-api")
DPO = Actor.controller_admin("dpo.rj1")
PATIENT = NHSNumber("943 476 5919")
REQUESTER_EMAIL = "patient@example.org"

RECEIVED = dt.datetime(2026, 3, 2, 10, 15, tzinfo=dt.UTC)  # a Monday


class Clock:
    """The processor's clock: the script moves it forward instead of waiting days."""

    def __init__(self, now: dt.datetime) -> None:
        self.now = now

    def __call__(self) -> dt.datetime:
        return self.now

    def set(self, year: int, month: int, day: int, hour: int = 10) -> None:
        self.now = dt.datetime(year, month, day, hour, 0, tzinfo=dt.UTC)


class CheckError(Exception):
    """A check of the walkthrough failed."""


def check(ok: bool, what: str) -> None:
    print(f"   [{'ok' if ok else 'FAILED'}] {what}")
    if not ok:
        raise CheckError(what)


def heading(text: str) -> None:
    print()
    print(text)


class Inbox:
    """The trust's side of its queue: read (and remove) what has arrived."""

    def __init__(self, connection_string: str, queue: str) -> None:
        self._client = QueueClient.from_connection_string(connection_string, queue)

    def drain(self) -> list[tuple[str, dict[str, Any]]]:
        """Every message waiting: (the raw text, the parsed notification)."""
        out = []
        for message in self._client.receive_messages(max_messages=32):
            raw = str(message.content)
            with contextlib.suppress(ValueError):  # tolerate a base64-encoding reader
                raw = base64.b64decode(raw, validate=True).decode()
            out.append((raw, json.loads(raw)))
            self._client.delete_message(message)
        return out

    def close(self) -> None:
        self._client.close()


def main() -> int:
    connection_string = os.environ.get("MIZAIC_CONNECTION_STRING")
    region = os.environ.get("MIZAIC_REGION")
    if not connection_string or not region:
        print(
            "Set MIZAIC_CONNECTION_STRING and MIZAIC_REGION, or run me with\n"
            "  python -m mizaic_processor.testing run -- python examples/subject_requests.py",
            file=sys.stderr,
        )
        return 2
    clock = Clock(RECEIVED)
    try:
        with (
            Processor.from_connection_string(
                connection_string, region=region, keyring=LocalKeyring.generate(),
                clock=clock,
            ) as processor,
            tempfile.TemporaryDirectory(prefix="mizaic-requests-") as tmp,
        ):
            walkthrough(processor, clock, connection_string, Path(tmp))
    except CheckError as exc:
        print(f"\nCHECK FAILED: {exc}", file=sys.stderr)
        return 1
    print("\nAll checks passed.")
    return 0


def walkthrough(
    processor: Processor, clock: Clock, connection_string: str, tmp: Path
) -> None:
    heading("1. Mizaic support registers the trust and routes its notifications to a queue")
    processor.register_controller(CONTROLLER, name="Example NHS Trust", actor=OPERATOR)
    route = processor.requests.set_route(
        CONTROLLER, QueueRoute(queue_name=QUEUE), actor=OPERATOR, create_queue=True
    )
    print(f"   route: {route.kind} '{route.target}', set by {route.set_by}")
    edms = processor.tenant(CONTROLLER, actor=SERVICE)
    edms.create_record(PATIENT, category="adult", fields={"specialty": "cardiology"},
                       content=b"%PDF-1.7 discharge letter", content_type="application/pdf")
    edms.create_record(PATIENT, category="adult", fields={"specialty": "radiology"})
    print("   the EDMS stored 2 records (one with a document) for the patient")
    inbox = Inbox(connection_string, QUEUE)
    try:
        requests_walkthrough(processor, clock, inbox, tmp)
    finally:
        inbox.close()


def requests_walkthrough(processor: Processor, clock: Clock, inbox: Inbox, tmp: Path) -> None:
    dpo = processor.tenant(CONTROLLER, actor=DPO)

    heading(f"2. {clock.now:%Y-%m-%d %H:%M}: an access request arrives by email; support "
            "records it")
    receipt = processor.requests.receive(
        kind="access", controller=CONTROLLER,
        subject="NHS number 943 476 5919", contact={"email": REQUESTER_EMAIL},
        received_at=clock.now, channel="email",
        text="Please send me a copy of everything you hold about me.", actor=OPERATOR,
    )
    request_id = receipt.request_id
    print(f"   request {request_id}: kind {receipt.kind}, controller {receipt.controller_id}, "
          f"forwarded now: {receipt.delivered}, due {receipt.due_on}")
    check(receipt.delivered and not receipt.triaged, "stored and forwarded to the trust at once")
    check(receipt.due_on == dt.date(2026, 4, 2), "due one calendar month after the day received")

    messages = inbox.drain()
    print(f"   the trust's queue holds {len(messages)} message(s):")
    for text, _parsed in messages:
        print(f"     {text}")
    ((raw, note),) = messages
    check(note["type"] == "request.received" and note["request_id"] == request_id,
          "the notification names the request by its opaque id")
    check(not any(secret in raw for secret in ("9434765919", "943 476 5919", REQUESTER_EMAIL,
                                                "copy of everything")),
          "no NHS number, contact details or request text in the notification")
    with contextlib.suppress(AccessDeniedError):
        processor.tenant(CONTROLLER, actor=OPERATOR).requests.get(request_id)
        check(False, "support cannot read the request's personal details back")
    print("   support cannot read the details back (AccessDeniedError)")
    holds = dpo.retention.list_holds()
    for hold in holds:
        print(f"   hold {hold.hold_id}: kind {hold.kind}, for request {hold.request_id}, "
              f"placed by {hold.placed_by}")
    check([(h.kind, h.request_id) for h in holds] == [("access_request", request_id)],
          "an automatic access-request hold protects the patient's data from intake")

    heading("3. The trust's DPO works the request through its own scope")
    details = dpo.requests.get(request_id)
    print(f"   status {details.status}, received {details.received_at:%Y-%m-%d %H:%M}, "
          f"channel {details.channel}")
    print(f"   subject as given: '{details.subject}'; contact: {details.contact.email}")
    print(f"   the requester's words: '{details.text}'")
    print(f"   history: {', '.join(f'{h.event} by {h.actor}' for h in details.history)}")
    check(details.status == "forwarded" and details.contact.email == REQUESTER_EMAIL,
          "only the trust's controller_admin reads the details, through its scope")

    summary = dpo.requests.acknowledge(request_id, subject=PATIENT)
    print(f"   acknowledged: status {summary.status}, due {summary.due_on} "
          f"({summary.days_remaining} days left)")
    clock.set(2026, 3, 4)
    summary = dpo.requests.pause(request_id, "identity")
    print(f"   {clock.now.date()}: asked for proof of identity: status {summary.status}, "
          f"due {summary.due_on} (the clock is not running)")
    check(summary.status == "awaiting_identity" and summary.due_on is None,
          "while identity is awaited there is no due date")
    clock.set(2026, 3, 16)
    summary = dpo.requests.resume(request_id)
    print(f"   {clock.now.date()}: identity arrived: status {summary.status}, "
          f"due {summary.due_on}")
    check(summary.due_on == dt.date(2026, 4, 16),
          "the clock restarts afresh on the day the identity evidence arrived")

    heading("4. Meanwhile an erasure request for the same patient is refused by the hold")
    clock.set(2026, 3, 17)
    erasure = processor.requests.receive(
        kind="erasure", controller=CONTROLLER, subject="943 476 5919",
        contact={"email": REQUESTER_EMAIL}, received_at=clock.now, channel="web",
        actor=OPERATOR,
    )
    types = [note["type"] for _raw, note in inbox.drain()]
    print(f"   request {erasure.request_id} (erasure) forwarded; the queue received: "
          f"{', '.join(types)}")
    dpo.requests.acknowledge(erasure.request_id)
    try:
        dpo.requests.instruct(erasure.request_id, subject=PATIENT, note="erase on request")
        check(False, "the erasure is refused while the access request is open")
    except HoldError as exc:
        print(f"   HoldError: {exc}")
    last = dpo.requests.get(erasure.request_id).history[-1]
    print(f"   the erasure request's history ends with '{last.event}'")
    check(last.event == "blocked:hold", "the refusal is recorded in the request's history")
    edms = processor.tenant(CONTROLLER, actor=SERVICE)
    check(len(list(edms.list_records(PATIENT))) == 2, "the patient's records are untouched")

    heading("5. The DPO instructs the access export, then completes the request")
    clock.set(2026, 3, 20)
    archive_path = tmp / "access-export.zip"
    with archive_path.open("wb") as destination:
        done = dpo.requests.instruct(request_id, subject=PATIENT, destination=destination,
                                     note="Subject access request: full copy")
    export = done.export
    assert export is not None
    print(f"   instruction {done.instruction_id}: {export.records} records, "
          f"{export.documents} document ({export.document_bytes} bytes) written to "
          f"{archive_path.name}")
    with zipfile.ZipFile(archive_path) as archive:
        names = archive.namelist()
        for name in names:
            print(f"     {name}  ({archive.getinfo(name).file_size} bytes)")
        bundle_json = archive.read("fhir-bundle.json")
        records = json.loads(archive.read("records.json"))["records"]
    check({"records.json", "fhir-bundle.json"} <= set(names) and len(records) == 2,
          "the ZIP holds records.json, the FHIR Bundle and the document")
    validate_fhir(bundle_json)
    summary = dpo.requests.complete(request_id, note="Sent to the patient by secure email")
    print(f"   completed: status {summary.status}")
    check(dpo.retention.list_holds() == [], "completing the request released its hold")
    refused = dpo.requests.refuse(
        erasure.request_id,
        reason="Art 17(3): health records the trust must keep under its retention schedule",
    )
    print(f"   the erasure request is closed as {refused.status}, with the trust's reason")

    heading("6. Mizaic reports a suspected breach to the trust")
    breach = processor.requests.report_breach(
        CONTROLLER, nature="A support laptop holding an export job log was stolen",
        categories=["health"], subjects_approx=1, records_approx=2,
        consequences="Low: the log holds opaque ids only", measures="Laptop wiped remotely",
        detected_at=clock.now, actor=OPERATOR,
    )
    print(f"   breach {breach.breach_id} v{breach.version}, forwarded now: {breach.delivered}")
    types = [note["type"] for _raw, note in inbox.drain()]
    print(f"   the queue received: {', '.join(types)}")
    check(types == ["breach.reported"], "the breach notice reached the trust's queue")
    (notice,) = dpo.requests.list_breaches()
    print(f"   the DPO reads it: '{notice.nature}', {notice.records_approx} records")

    heading("7. A court order: a disclosure required by law, recorded and notified")
    clock.set(2026, 3, 23)
    with (tmp / "court-disclosure.zip").open("wb") as destination:
        disclosure = processor.disclose_required_by_law(
            CONTROLLER, PATIENT, destination, actor=OPERATOR,
            legal_basis="Court order under CPR 31.17", requesting_authority="High Court",
            reference="HC-2026-000123",
        )
    print(f"   disclosure {disclosure.disclosure_id}: {disclosure.records} records, "
          f"{disclosure.documents} document, by {disclosure.disclosed_by}, trust notified: "
          f"{disclosure.controller_notified}")
    report = processor.requests.deliver_pending()  # the pump: run it periodically
    print(f"   delivery pump: {report.delivered} delivered, {report.failed} failed, "
          f"{report.waiting} waiting")
    notes = [note for _raw, note in inbox.drain()]
    made = [n for n in notes if n["type"] == "disclosure.made"]
    print(f"   the queue received: {', '.join(n['type'] for n in notes)}")
    check([n["disclosure_id"] for n in made] == [disclosure.disclosure_id],
          "the trust is told a disclosure was made (the legal details stay sealed)")
    events = [e for e in dpo.audit.query() if e.operation == "subject.disclose"]
    for event in events:
        print(f"   audit: {event.operation} by {event.actor} ({event.role}), purpose "
              f"{event.purpose}, {event.outcome}")
    check([(e.actor, e.purpose) for e in events] == [(OPERATOR.id, "HLEGAL")],
          "the disclosure is in the trust's audit trail with purpose HLEGAL")

    heading("8. The trust holds its own copies of the audit checkpoints")
    verified = dpo.audit.verify()  # also seals this process's chain head
    print(f"   verify: {verified.chains} chain(s), {verified.events} events, "
          f"{verified.checkpoints} checkpoints")
    processor.requests.deliver_pending()
    checkpoints = [n for _raw, n in inbox.drain() if n["type"] == "audit.checkpoint"]
    for note in checkpoints:
        body = note["checkpoint"]["body"]
        print(f"   checkpoint: chain {body['chain']}, event #{body['seq']}, head "
              f"{body['head'][:16]}...")
    check(any(n["checkpoint"]["body"]["seq"] > 0 for n in checkpoints),
          "sealed chain heads reach the trust's queue, outside Mizaic's storage")


def validate_fhir(bundle_json: bytes) -> None:
    try:
        from fhir.resources.R4B.bundle import Bundle
    except ImportError:
        print("   (fhir.resources is not installed: FHIR validation skipped)")
        return
    bundle = Bundle.model_validate_json(bundle_json)
    kinds = sorted({type(entry.resource).__name__ for entry in bundle.entry or []})
    print(f"   fhir.resources validates the Bundle: {len(bundle.entry or [])} entries "
          f"({', '.join(kinds)})")
    check(bundle.type == "collection", "the FHIR Bundle validates")


if __name__ == "__main__":
    sys.exit(main())
