"""Key rotation without downtime: the KEK, the controller key and the blind-index key.

Reached as ``scope.keys`` by a ``controller_admin`` (or a ``processor_operator``: the
passes handle key material and pseudonymous ids, never show patient data).

- :meth:`KeyRotation.rotate_kek`: a new KEK version in the keyring (Key Vault or
  local); the controller key is re-wrapped under it (one document). Disable the old
  KEK version in the vault afterwards.
- :meth:`KeyRotation.rotate_controller_key`: a new controller key becomes current for
  new writes; a resumable pass re-wraps every subject key under it (no content is
  re-encrypted: record keys derive from the unchanged subject keys). Old versions stay
  usable for reading until :meth:`KeyRotation.retire_old_controller_keys` destroys them,
  which also bounds how long any stale copy of a wrapped subject key stays usable.
- :meth:`KeyRotation.rotate_index_key`: a new blind-index key; a resumable pass
  re-indexes every subject (lookups try both keys meanwhile), then
  :meth:`KeyRotation.retire_old_index_keys` destroys the old one.
- :meth:`KeyRotation.verify_index`: a pass that checks every subject with records is
  still found through the blind index, puts back an entry storage lost, and reports a
  subject whose records are divided between two keys.

Retiring waits until every process has seen the new version: at least the longest key
cache lifetime any process may configure (one hour) after the rotation, since a process
holding the old controller keys in its cache could still wrap with them until its cache
expires.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import itertools
from collections.abc import Iterator
from typing import TYPE_CHECKING, Literal

from pydantic import BaseModel, ConfigDict

from mizaic_processor._core import ids, record_doc
from mizaic_processor._keystore import INDEX_PREFIX, SUBJECT_PREFIX
from mizaic_processor._progress import Progress, check_progress, no_progress
from mizaic_processor.errors import (
    ConflictError,
    IntegrityError,
    InvalidInputError,
    KeyManagementError,
    NotFoundError,
)
from mizaic_processor.models import Role, SubjectId, subject_from

if TYPE_CHECKING:
    from mizaic_processor._scope import ControllerScope

__all__ = ["IndexReport", "KeyRotation", "RotationReport"]

_ROTATORS = frozenset({Role.CONTROLLER_ADMIN, Role.PROCESSOR_OPERATOR})
MAX_KEY_CACHE_TTL = 3600.0  # the largest key_cache_ttl a Processor accepts


class RotationReport(BaseModel):
    """What a rotation pass did."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    version: int
    examined: int
    changed: int
    skipped: int = 0


def _is_skid(value: str) -> bool:
    try:
        ids.opaque_id("s" + value)
    except InvalidInputError:
        return False
    return True


class IndexReport(BaseModel):
    """What :meth:`KeyRotation.verify_index` found.

    :ivar examined: subject keys examined.
    :ivar restored: index entries put back for subject keys whose entry storage had lost.
    :ivar split: subject key ids (pseudonymous) whose subject's index entry names another
        live key: the subject's records are divided between two keys, and only the other
        key's are found, exported or erased through the subject's identifier.
    :ivar damaged: subject key ids whose record or index entry failed verification
        (the pass went on past them; see the automatic integrity notice).
    :ivar without_records: subject keys with no record, which have nothing to find (a
        subject being created, or one whose records were all destroyed).
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    examined: int
    restored: int
    split: tuple[str, ...] = ()
    damaged: tuple[str, ...] = ()
    without_records: int = 0


_IndexState = Literal["ok", "missing", "split"]

# the automatic notice's consequences for what verify_index finds: nothing was refused
_CHECK_FINDING = (
    "the blind-index check found subjects whose records could not be found through their "
    "identifier (an index entry lost, a subject split between two keys) or stored data that "
    "failed verification; lost entries were put back, the rest is listed by subject key id "
    "in the check's report and audit trail; data may have been altered by someone with "
    "access to storage"
)


class KeyRotation:
    """Rotation of one controller's keys, and the check of its blind index. Every
    rotation step is audited."""

    def __init__(self, scope: ControllerScope) -> None:
        self._scope = scope
        self._ttl = MAX_KEY_CACHE_TTL

    def __repr__(self) -> str:
        return f"KeyRotation(controller={self._scope.controller_id!r})"

    def _authorise(self, what: str) -> None:
        self._scope._require(_ROTATORS, what)

    def _kek_name(self) -> str:
        return f"mizaic-{self._scope.controller_id}"

    def rotate_kek(self) -> str:
        """Create a new version of the controller's KEK and re-wrap the controller key
        under it. New and existing data stay readable throughout.

        :returns: the new KEK version's key id.
        :raises KeyManagementError: if the keyring refuses.
        :raises AccessDeniedError: for a ``service`` actor.
        """
        self._authorise("rotate keys")
        scope = self._scope

        def run() -> str:
            kek_id = scope._keyring.rotate_key(self._kek_name())
            scope._keys.rewrap_under_kek(kek_id)
            return kek_id

        return scope._audited("key.rotate_kek", "U", f"controller:{scope.controller_id}", run,
                              write=True)

    def _kek_id(self) -> str:
        wrapped = self._scope._keys.current_wrapped_kek_id()
        return wrapped

    def rotate_controller_key(self, *, progress: Progress = no_progress) -> RotationReport:
        """Make a new controller key current and re-wrap every subject key under it.

        Resumable: run again after an interruption, it re-wraps only what is left (and
        makes no further version if the newest one has not been retired yet).

        :raises AccessDeniedError: for a ``service`` actor.
        """
        progress = check_progress(progress)
        self._authorise("rotate keys")
        scope = self._scope
        keys = scope._keys
        state = keys.state()
        if len(state.versions) == 1:
            version = scope._audited(
                "key.rotate_controller_key", "U", f"controller:{scope.controller_id}",
                lambda: keys.add_controller_key(self._kek_id(), scope._clock().isoformat()),
                write=True,
            )
        else:
            version = state.current
        return self._rewrap_pass(version, progress)

    def _rewrap_pass(self, version: int, progress: Progress) -> RotationReport:
        scope = self._scope
        scope._emit("key.rewrap_pass", "U", f"controller:{scope.controller_id}")[1].wait()
        names = list(scope._container.list_names(SUBJECT_PREFIX))
        changed = skipped = 0
        for done, name in enumerate(names, start=1):
            skid = name.removeprefix(SUBJECT_PREFIX)
            for _attempt in range(5):
                try:
                    changed += scope._keys.rewrap_subject(skid)
                    break
                except ConflictError:
                    continue
                except NotFoundError:
                    break
            else:
                skipped += 1  # kept changing under us: left for the next pass
            progress(done, len(names))
        return RotationReport(version=version, examined=len(names), changed=changed,
                              skipped=skipped)

    def _old_enough(self, rotated_at: str) -> None:
        try:
            when = dt.datetime.fromisoformat(rotated_at)
        except ValueError:
            raise ConflictError(
                "the rotation time is unreadable; refusing to retire old keys"
            ) from None
        if (self._scope._clock() - when).total_seconds() < self._ttl:
            raise ConflictError(
                "too soon to retire: other processes may still use the old key until "
                f"their key cache expires (wait {int(self._ttl)} s after the rotation)"
            )

    def retire_old_controller_keys(self, *, progress: Progress = no_progress) -> list[int]:
        """Finish a controller-key rotation: re-wrap any subject key still under an old
        version, then destroy the old versions.

        :returns: the retired versions.
        :raises ConflictError: if called sooner than the key cache lifetime after the
            rotation.
        :raises AccessDeniedError: for a ``service`` actor.
        """
        progress = check_progress(progress)
        self._authorise("rotate keys")
        scope = self._scope
        state = scope._keys.state()
        if len(state.versions) == 1:
            return []
        self._old_enough(state.rotated_at)
        report = self._rewrap_pass(state.current, progress)
        if report.skipped:
            raise ConflictError(
                f"{report.skipped} subject keys could not be re-wrapped (changed "
                "concurrently); run retire again before the old key is destroyed"
            )
        return scope._audited(
            "key.retire_controller_keys", "D", f"controller:{scope.controller_id}",
            scope._keys.retire_controller_keys, write=True,
        )

    def rotate_index_key(self, *, progress: Progress = no_progress) -> RotationReport:
        """Make a new blind-index key current and re-index every subject under it.

        Lookups try the old key too until :meth:`retire_old_index_keys`. Resumable.
        Re-indexing reads one record's sealed meta per subject to recover its
        identifier inside this process; nothing identifying is written or returned.

        :raises AccessDeniedError: for a ``service`` actor.
        """
        progress = check_progress(progress)
        self._authorise("rotate keys")
        scope = self._scope
        keys = scope._keys
        state = keys.state()
        if len(state.index_keys) == 1:
            version = scope._audited(
                "key.rotate_index_key", "U", f"controller:{scope.controller_id}",
                lambda: keys.add_index_key(scope._clock().isoformat()), write=True,
            )
        else:
            version = state.index_current
        return self._reindex_pass(version, progress)

    def _reindex_pass(self, version: int, progress: Progress) -> RotationReport:
        scope = self._scope
        keys = scope._keys
        scope._emit("key.reindex_pass", "U", f"controller:{scope.controller_id}")[1].wait()
        names = list(scope._container.list_names(INDEX_PREFIX))
        listed = set(names)
        changed = skipped = 0
        for done, name in enumerate(names, start=1):
            progress(done, len(names))
            index = name.removeprefix(INDEX_PREFIX)
            try:
                stored = scope._container.get(name, what="subject index entry")
            except NotFoundError:
                continue
            skid, entry_version = keys.read_index_entry(index, stored.data)
            if entry_version == version:
                continue
            subject_meta = self._subject_meta(skid)
            if subject_meta is None:
                skipped += 1
                continue
            subject = subject_from(subject_meta["kind"], subject_meta["value"])
            new_index = keys.blind_index(subject, version)
            if INDEX_PREFIX + new_index in listed:
                continue  # re-indexed by an earlier, interrupted pass
            # The old entry stays until the old index key is retired: a process whose
            # cached keys predate the rotation still finds the subject through it.
            try:
                scope._container.put(INDEX_PREFIX + new_index,
                                     keys.index_entry(new_index, skid, version),
                                     what="subject index entry")
            except ConflictError:  # re-indexed by an earlier, interrupted pass
                existing = scope._container.get(INDEX_PREFIX + new_index).data
                if keys.read_index_entry(new_index, existing)[0] != skid:
                    raise KeyManagementError("re-index found two keys for one subject") from None
                continue
            changed += 1
        return RotationReport(version=version, examined=len(names), changed=changed,
                              skipped=skipped)

    def _subject_meta(self, skid: str) -> dict[str, str] | None:
        for record_id in self._listed(skid):
            found = self._subject_of(record_id)
            if found is not None:
                return found
        return None

    def _listed(self, skid: str) -> Iterator[str]:
        """The ids of the records listed under key ``skid`` (stray names skipped)."""
        block = f"records/{skid}/"
        for name in self._scope._container.list_names(block):
            record_id = ids.record_id_of_name(skid, name.removeprefix(block))
            if record_id is not None:
                yield record_id

    def _subject_of(self, record_id: str) -> dict[str, str] | None:
        """The subject a record's sealed meta names (verified), read in memory only."""
        scope = self._scope
        key, doc, _ = scope._load(record_id, for_admin=True)
        meta = record_doc.decrypt_meta(
            scope._record_keys(key, record_id), doc, controller_id=scope.controller_id,
            record_id=record_id,
        )
        subject = meta.get("subject")
        if isinstance(subject, dict):
            return {"kind": str(subject["kind"]), "value": str(subject["value"])}
        return None

    def retire_old_index_keys(self, *, progress: Progress = no_progress) -> list[int]:
        """Finish an index-key rotation: re-index what is left, then destroy the old
        index keys.

        :raises ConflictError: if called sooner than the key cache lifetime after the
            rotation.
        :raises AccessDeniedError: for a ``service`` actor.
        """
        progress = check_progress(progress)
        self._authorise("rotate keys")
        scope = self._scope
        state = scope._keys.state()
        if len(state.index_keys) == 1:
            return []
        self._old_enough(state.index_rotated_at)
        # entries that could not be re-indexed belong to subjects without any record:
        # nothing is lost by dropping them with the old key
        self._reindex_pass(state.index_current, progress)

        def retire() -> list[int]:
            for name in list(scope._container.list_names(INDEX_PREFIX)):
                try:
                    stored = scope._container.get(name, what="subject index entry")
                except NotFoundError:
                    continue
                _skid, entry_version = scope._keys.read_index_entry(
                    name.removeprefix(INDEX_PREFIX), stored.data
                )
                if entry_version != state.index_current:
                    scope._container.delete(name, etag=stored.etag, what="subject index entry")
            return scope._keys.retire_index_keys()

        return scope._audited(
            "key.retire_index_keys", "D", f"controller:{scope.controller_id}", retire,
            write=True,
        )

    def verify_index(self, *, progress: Progress = no_progress) -> IndexReport:
        """Check that every subject with records is found through the blind index.

        Storage can lose an index entry (``index/<blind index>``), by tampering or by an
        operator's mistake. The subject then reads as unknown: its records are not
        listed, exported or erased through its identifier, and the next record for it
        would get a second key. This pass reads one sealed record per subject key (in
        memory; nothing identifying is written or returned) and looks the subject up as
        a lookup does (newest index key version first; an entry naming an erased key is
        dropped):

        - the first live entry names this key: nothing to do;
        - there is none: the entry is put back under the current index key (an audited
          ``subject.index_restore``), unless the key was erased meanwhile;
        - it names another live key: the subject is **split**, recorded as a
          ``subject.index_split`` event. Both keys stay; the report lists this key's id,
          for the controller to instruct what to do with the records only this key opens
          (see the blind-index docs);
        - the record or an entry fails verification: the key is listed as ``damaged``
          and the pass goes on.

        The first finding sends the controller the automatic integrity notice. Resumable:
        run it again after an interruption, and what was put back stays put back. It
        lists the subject keys and the records once each, in name order, so memory stays
        bounded however many there are; progress is reported as ``progress(done, None)``.

        :raises AccessDeniedError: for a ``service`` actor.
        :raises InvalidInputError: if ``progress`` is not callable.
        :raises StorageError: if storage fails.
        """
        progress = check_progress(progress)
        self._authorise("verify the index")
        scope = self._scope
        scope._emit("key.verify_index", "E", f"controller:{scope.controller_id}")[1].wait()
        version = scope._keys.state().index_current  # every version held now, too
        counts = {"restored": 0, "without": 0}
        split: list[str] = []
        damaged: list[str] = []
        examined = 0
        for skid, record_id in self._first_records():
            examined += 1
            outcome: str
            try:
                outcome, record_damaged = self._check(skid, record_id, version)
            except IntegrityError:
                outcome, record_damaged = "unchecked", True
            if record_damaged:
                damaged.append(skid)
            if outcome == "split":
                split.append(skid)
                scope._emit("subject.index_split", "E", f"subject:{skid}")[1].wait()
            elif outcome in counts:
                counts[outcome] += 1
            if record_damaged or outcome in ("split", "restored"):
                # the controller is told (at most once an hour per process)
                scope._integrity_alarm(scope.controller_id, "key.verify_index", _CHECK_FINDING)
            progress(examined, None)
        return IndexReport(examined=examined, restored=counts["restored"], split=tuple(split),
                           damaged=tuple(damaged), without_records=counts["without"])

    def _check(self, skid: str, record_id: str | None, version: int
               ) -> tuple[Literal["ok", "restored", "split", "without"], bool]:
        """Check one subject key (see :meth:`verify_index`).

        :returns: the outcome, and whether one of the key's records failed verification
            (another one named the subject).
        :raises IntegrityError: if the name is no key id, no record of the key
            verifies, or an index entry fails verification.
        """
        if not _is_skid(skid):  # a stray name, not a key the library wrote
            raise IntegrityError("stored data failed integrity verification")
        if record_id is None:
            return "without", False
        found, damaged = self._found_subject(skid, record_id)
        if found is None:
            return "without", damaged
        state = self._index_state(found, skid)
        if state == "missing":
            state, put_back = self._restore(found, skid, version)
            if put_back:
                return "restored", damaged
        # still missing: erased meanwhile
        return ("without" if state == "missing" else state), damaged

    def _first_records(self) -> Iterator[tuple[str, str | None]]:
        """Each name under ``subjects/``, with the id of its key's first well-formed
        record (``None`` if it has none, or the name is no key id).

        Key ids are all 26 base32 characters, so the keys' order is the order of their
        ``records/<key id>/`` blocks: one pass over each listing suffices. Stray names
        are skipped without disturbing the walk (``records/<key id>-x`` sorts before
        ``records/<key id>/``)."""
        container = self._scope._container
        records = container.list_names("records/")
        pending = next(records, None)
        for name in container.list_names(SUBJECT_PREFIX):
            skid = name.removeprefix(SUBJECT_PREFIX)
            if not _is_skid(skid):
                yield skid, None
                continue
            block = f"records/{skid}/"
            first = None
            while pending is not None and pending < block:
                pending = next(records, None)
            while pending is not None and pending.startswith(block):
                first = ids.record_id_of_name(skid, pending.removeprefix(block))
                if first is not None:
                    break
                pending = next(records, None)
            yield skid, first

    def _found_subject(self, skid: str, record_id: str) -> tuple[SubjectId | None, bool]:
        """The subject a key's records name: ``record_id``'s, else the first of the
        key's other records that verifies.

        :returns: the subject (``None`` if no record is left), and whether a record of
            the key failed verification.
        :raises IntegrityError: if records are left and none verifies.
        """
        # the others are listed only if the first one does not do
        others = (other for other in self._listed(skid) if other != record_id)
        damaged = False
        for candidate in itertools.chain((record_id,), others):
            try:
                meta = self._subject_of(candidate)
            except NotFoundError:  # destroyed since it was listed
                continue
            except IntegrityError:
                damaged = True
                continue
            if meta is not None:
                return subject_from(meta["kind"], meta["value"]), damaged
        if damaged:
            raise IntegrityError("stored data failed integrity verification")
        return None, False

    def _index_state(self, subject: SubjectId, skid: str) -> _IndexState:
        """What a lookup of ``subject`` finds: its first live entry, newest index key
        version first, naming ``skid`` (``ok``) or another key (``split``), or none
        (``missing``). An entry naming a key that no longer exists is dropped, as a
        lookup drops it."""
        scope = self._scope
        keys = scope._keys
        for index in keys.index_names(subject):
            try:
                stored = scope._container.get(INDEX_PREFIX + index, what="subject index entry")
            except NotFoundError:
                continue
            named, _version = keys.read_index_entry(index, stored.data)
            if named == skid:
                return "ok"
            if scope._container.exists_blob(SUBJECT_PREFIX + named, what="subject key"):
                return "split"
            with contextlib.suppress(ConflictError, NotFoundError):  # changed meanwhile
                scope._container.delete(INDEX_PREFIX + index, etag=stored.etag,
                                        what="subject index entry")
        return "missing"

    def _restore(self, subject: SubjectId, skid: str, version: int
                 ) -> tuple[_IndexState, bool]:
        """Put back the subject's entry under index key ``version``, naming ``skid``.

        :returns: the subject's state afterwards, and whether an entry was put back.
        """
        scope = self._scope
        keys = scope._keys
        index = keys.blind_index(subject, version)
        key_name = SUBJECT_PREFIX + skid

        def run() -> None:
            etag = scope._container.put(INDEX_PREFIX + index,
                                        keys.index_entry(index, skid, version),
                                        what="subject index entry")
            if not scope._container.exists_blob(key_name, what="subject key"):
                # erased while the entry was written: it must not outlive the key (and
                # the event records a failure: nothing was restored)
                with contextlib.suppress(ConflictError, NotFoundError):
                    scope._container.delete(INDEX_PREFIX + index, etag=etag,
                                            what="subject index entry")
                raise NotFoundError("the subject key was erased meanwhile")

        for _attempt in range(2):
            if not scope._container.exists_blob(key_name, what="subject key"):
                return "missing", False  # erased since it was listed
            try:
                scope._audited("subject.index_restore", "C", f"subject:{skid}", run,
                               write=True)
            except NotFoundError:
                return "missing", False
            except ConflictError:  # an entry was written meanwhile: judge it
                state = self._index_state(subject, skid)
                if state != "missing":
                    return state, False
                continue
            return "ok", True
        return "missing", False
