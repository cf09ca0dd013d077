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

Retiring waits until every process has seen the new version: at least the longest key
cache lifetime any process may configure (one hour) after the rotation, since a process
holding the old controller keys in its cache could still wrap with them until its cache
expires.
"""

from __future__ import annotations

import datetime as dt
from typing import TYPE_CHECKING

from pydantic import BaseModel, ConfigDict

from mizaic_processor._core import record_doc
from mizaic_processor._keystore import INDEX_PREFIX, SUBJECT_PREFIX
from mizaic_processor._progress import Progress, check_progress, no_progress
from mizaic_processor.errors import ConflictError, KeyManagementError, NotFoundError
from mizaic_processor.models import Role, subject_from

if TYPE_CHECKING:
    from mizaic_processor._scope import ControllerScope

__all__ = ["KeyRotation", "RotationReport"]

_ROTATORS = frozenset({Role.CONTROLLER_ADMIN, Role.PROCESSOR_OPERATOR})
MAX_KEY_CACHE_TTL = 3600.0  # the largest key_cache_ttl a Processor accepts


class RotationReport(BaseModel):
    """What a rotation pass did."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    version: int
    examined: int
    changed: int
    skipped: int = 0


class KeyRotation:
    """Rotation of one controller's keys. Every step is audited."""

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
        scope = self._scope
        for name in scope._container.list_names(f"records/{skid}/"):
            record_id = "r" + skid + name.split("/")[2]
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
