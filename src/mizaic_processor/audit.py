"""The tamper-evident audit trail: verify, query and export a controller's events.

Every operation on patient data appends an event (see :mod:`mizaic_processor._audit_writer`
for how, and ``docs/audit.md`` for why). :class:`AuditTrail`, reached as
``scope.audit``, reads the trail back for a ``controller_admin``.
"""

from __future__ import annotations

import datetime as dt
import json
import os
from collections import defaultdict
from collections.abc import Callable
from importlib import resources
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict

from mizaic_processor._audit_writer import AUDIT_PREFIX, CHECKPOINT_PREFIX
from mizaic_processor._azure.blob import Container
from mizaic_processor._core import audit_chain
from mizaic_processor.errors import AuditTamperedError, InvalidInputError, MizaicError

__all__ = ["AuditEvent", "AuditReport", "AuditTrail"]

# FHIR R4 AuditEvent.action and .outcome codes
_FHIR_OUTCOME = {"success": "0", "failure": "8"}


class AuditEvent(BaseModel):
    """One audit event, as recorded. Carries pseudonymous references only."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    id: str
    chain: str
    seq: int
    recorded: dt.datetime
    actor: str
    role: str
    action: str
    operation: str
    entity: str
    outcome: str
    purpose: str
    policy: str | None = None
    ref: str | None = None


class AuditReport(BaseModel):
    """What :meth:`AuditTrail.verify` checked."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    chains: int
    events: int
    checkpoints: int


def _to_event(raw: dict[str, Any]) -> AuditEvent:
    return AuditEvent(
        id=raw["id"], chain=raw["chain"], seq=raw["seq"],
        recorded=dt.datetime.fromisoformat(raw["at"]), actor=raw["actor"], role=raw["role"],
        action=raw["action"], operation=raw["op"], entity=raw["entity"],
        outcome=raw["outcome"], purpose=raw["purpose"], policy=raw.get("policy"),
        ref=raw.get("ref"),
    )


def fhir_audit_event(event: AuditEvent, controller_id: str) -> dict[str, Any]:
    """Map an event onto a FHIR R4 ``AuditEvent`` resource (as a JSON-ready dict)."""
    resource: dict[str, Any] = {
        "resourceType": "AuditEvent",
        "id": event.id,
        "type": {
            "system": "http://terminology.hl7.org/CodeSystem/audit-event-type",
            "code": "rest",
            "display": "RESTful Operation",
        },
        "subtype": [{"system": "https://mizaic.example/audit-operation",
                     "code": event.operation}],
        "action": event.action,
        "recorded": event.recorded.isoformat(),
        "outcome": _FHIR_OUTCOME.get(event.outcome, "4"),
        "purposeOfEvent": [{"coding": [{
            "system": "http://terminology.hl7.org/CodeSystem/v3-ActReason",
            "code": event.purpose}]}],
        "agent": [{
            "type": {"coding": [{"system": "https://mizaic.example/role",
                                 "code": event.role}]},
            "who": {"identifier": {"value": event.actor}},
            "requestor": True,
        }],
        "source": {
            "site": controller_id,
            "observer": {"identifier": {"value": f"mizaic_processor/{event.chain}"}},
        },
        "entity": [{"what": {"identifier": {"value": event.entity}}}],
    }
    if event.policy:
        resource["agent"][0]["policy"] = [event.policy]
    return resource


class AuditTrail:
    """A controller's audit trail, for a ``controller_admin``.

    Obtain it as ``scope.audit``; every method raises
    :class:`~mizaic_processor.errors.AccessDeniedError` for other roles.
    """

    def __init__(
        self,
        container: Container,
        *,
        controller_id: str,
        authorise: Callable[[str], None],
        key_for_version: Callable[[int], bytes],
        record: Callable[[str, str], None],
        seal: Callable[[], None],
        on_tamper: Callable[[], None] = lambda: None,
        subject_ref: Callable[[Any], str | None],
    ) -> None:
        self._container = container
        self._controller_id = controller_id
        self._authorise = authorise
        self._key_for_version = key_for_version
        self._record = record
        self._seal = seal
        self._on_tamper = on_tamper
        self._subject_ref = subject_ref

    def __repr__(self) -> str:
        return f"AuditTrail(controller={self._controller_id!r})"

    def _chains(self) -> dict[str, list[bytes]]:
        segments: dict[str, list[str]] = defaultdict(list)
        for name in self._container.list_names(AUDIT_PREFIX):
            parts = name.split("/")
            if len(parts) != 3:
                raise AuditTamperedError("?", 0, "malformed")
            segments[parts[1]].append(name)
        chains: dict[str, list[bytes]] = {}
        for chain, names in segments.items():
            lines: list[bytes] = []
            for number, name in enumerate(sorted(names), start=1):
                if not name.endswith(f"/{number:08d}"):
                    raise AuditTamperedError(chain, len(lines) + 1, "removed")
                data = self._container.get(name, what="audit segment").data
                if data and not data.endswith(b"\n"):
                    raise AuditTamperedError(chain, len(lines) + 1, "malformed")
                lines.extend(data.splitlines())
            chains[chain] = lines
        return chains

    def _checkpoints(self) -> list[dict[str, Any]]:
        out = []
        for name in self._container.list_names(CHECKPOINT_PREFIX):
            try:
                out.append(json.loads(self._container.get(name, what="audit checkpoint").data))
            except ValueError:
                raise AuditTamperedError("?", 0, "forged checkpoint") from None
        return out

    def verify(self) -> AuditReport:
        """Walk every chain and checkpoint; raise at the first broken event.

        This process's own chain is sealed with a checkpoint first, so everything it
        recorded so far is covered.

        :returns: what was verified, when everything verifies.
        :raises AuditTamperedError: naming the chain, sequence number and kind of the
            first break (altered, removed, reordered, inserted, truncated, ...).
        :raises AccessDeniedError: unless the actor is a ``controller_admin``.
        """
        self._authorise("verify the audit trail")
        self._record("audit.verify", "E")
        self._seal()
        try:
            return self._verify()
        except AuditTamperedError:
            self._on_tamper()
            raise

    def _verify(self) -> AuditReport:
        chains = self._chains()
        heads: dict[str, audit_chain.ChainHead] = {}
        hashes: dict[str, list[str]] = {}
        events = 0
        for chain in sorted(chains):
            head, broken = audit_chain.verify_chain(chain, chains[chain])
            if broken is not None:
                raise AuditTamperedError(broken.chain, broken.seq, broken.kind)
            heads[chain] = head
            hashes[chain] = [audit_chain.line_hash(line) for line in chains[chain]]
            events += head.seq
        checkpoints = self._checkpoints()

        def key_for(cp: dict[str, Any]) -> bytes | None:
            try:
                return self._key_for_version(int(cp.get("key_version", 0)))
            except (MizaicError, ValueError, TypeError):
                return None

        broken = audit_chain.verify_checkpoints(key_for, heads, hashes, checkpoints)
        if broken is not None:
            raise AuditTamperedError(broken.chain, broken.seq, broken.kind)
        return AuditReport(chains=len(chains), events=events, checkpoints=len(checkpoints))

    def query(
        self,
        *,
        since: dt.datetime | None = None,
        until: dt.datetime | None = None,
        actor: str | None = None,
        record_id: str | None = None,
        subject: Any = None,
    ) -> list[AuditEvent]:
        """Events matching every filter given, in time order.

        :param subject: an NHSNumber or HospitalNumber; matched through its
            pseudonymous reference, never stored in plaintext.
        :raises InvalidInputError: if a filter is malformed.
        :raises AccessDeniedError: unless the actor is a ``controller_admin``.
        """
        self._authorise("query the audit trail")
        for when in (since, until):
            if when is not None and (
                not isinstance(when, dt.datetime) or when.utcoffset() is None  # naive
            ):
                raise InvalidInputError("since/until must be timezone-aware datetimes")
        if actor is not None and not isinstance(actor, str):
            raise InvalidInputError("actor must be an actor id")
        if record_id is not None and not isinstance(record_id, str):
            raise InvalidInputError("record_id must be a record id")
        skid = self._subject_ref(subject) if subject is not None else None
        self._record("audit.query", "R")
        if subject is not None and skid is None:
            return []
        events = []
        for lines in self._chains().values():
            for line in lines:
                try:
                    event = _to_event(json.loads(line))
                except (ValueError, KeyError, TypeError):
                    continue
                if since is not None and event.recorded < since:
                    continue
                if until is not None and event.recorded > until:
                    continue
                if actor is not None and event.actor != actor:
                    continue
                if record_id is not None and event.entity != record_id:
                    continue
                if skid is not None and not (
                    event.entity == f"subject:{skid}" or event.entity.startswith("r" + skid)
                ):
                    continue
                events.append(event)
        events.sort(key=lambda e: (e.recorded, e.chain, e.seq))
        return events

    def export(self, directory: str | Path) -> Path:
        """Write the trail for the controller into ``directory`` (created if missing).

        Files: ``chains/<chain>.ndjson`` (the raw event lines), ``checkpoints.json``,
        ``auditevents.json`` (a FHIR R4 ``Bundle`` of ``AuditEvent`` resources), and
        ``verify_audit.py`` with ``audit_chain.py``, a verifier that needs only the
        Python standard library, and ``audit_key.hex``, the controller's checkpoint key,
        so the controller can check checkpoint seals too::

            python verify_audit.py <directory> --key $(cat <directory>/audit_key.hex)

        :returns: the directory.
        :raises AuditTamperedError: if the trail does not verify (nothing is exported).
        :raises AccessDeniedError: unless the actor is a ``controller_admin``.
        :raises InvalidInputError: if ``directory`` is not a path, or cannot be created
            (its path is checked before anything is read).
        """
        if not isinstance(directory, str | Path):
            raise InvalidInputError("directory must be a path")
        self._authorise("export the audit trail")
        target = Path(directory)
        _check_export_directory(target)  # before any request; nothing is created yet
        self.verify()
        self._record("audit.export", "E")
        try:
            (target / "chains").mkdir(parents=True, exist_ok=True)
        except (OSError, ValueError):  # e.g. no permission
            raise InvalidInputError("the export directory cannot be created") from None
        chains = self._chains()
        entries = []
        for chain, lines in chains.items():
            (target / "chains" / f"{chain}.ndjson").write_bytes(
                b"".join(line + b"\n" for line in lines)
            )
            for line in lines:
                event = _to_event(json.loads(line))
                entries.append({"resource": fhir_audit_event(event, self._controller_id)})
        (target / "checkpoints.json").write_text(json.dumps(self._checkpoints(), indent=1))
        bundle = {"resourceType": "Bundle", "type": "collection", "entry": entries}
        (target / "auditevents.json").write_text(json.dumps(bundle, indent=1))
        package = resources.files("mizaic_processor")
        (target / "verify_audit.py").write_text(package.joinpath("verify_audit.py").read_text())
        (target / "audit_chain.py").write_text(
            package.joinpath("_core", "audit_chain.py").read_text()
        )
        key_file = target / "audit_key.hex"
        key_file.write_text(self._key_for_version(1).hex())
        key_file.chmod(0o600)
        return target


def _check_export_directory(target: Path) -> None:
    """A path that is, or can become, a directory: no NUL or unencodable character, and
    its nearest existing ancestor (or itself) is a directory. Creates nothing.

    :raises InvalidInputError: otherwise.
    """
    try:
        os.fsencode(target)  # a lone surrogate cannot be a file name
        if "\x00" in str(target):
            raise ValueError
        existing = target.absolute()
        while not existing.exists() and existing != existing.parent:
            existing = existing.parent
        ok = existing.is_dir()
    except (OSError, ValueError):
        ok = False
    if not ok:
        raise InvalidInputError("the export directory cannot be created")
