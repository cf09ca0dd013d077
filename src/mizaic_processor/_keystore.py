"""A controller's key hierarchy in storage, with bounded-lifetime caches.

KEK (keyring) -> controller key (``keys/controller.json``, wrapped by the KEK)
  -> blind-index key (wrapped by the controller key, same document)
  -> one key per subject (``subjects/<skid>``, wrapped by the controller key)
  -> per-record keys derived in the pure core.

The subject index (``index/<blind index>`` -> subject key id) is how a subject
identifier finds its key and records without any plaintext identifier in storage.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import os
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from mizaic_processor._azure.blob import Container
from mizaic_processor._core import envelope, ids
from mizaic_processor._core.keys import (
    audit_key,
    blind_index,
    subject_key_context,
)
from mizaic_processor.errors import (
    ConflictError,
    IntegrityError,
    KeyManagementError,
    NotFoundError,
)
from mizaic_processor.keyring import Keyring, WrappedKey
from mizaic_processor.models import SubjectId

CONTROLLER_KEYS = "keys/controller.json"
SUBJECT_PREFIX = "subjects/"
INDEX_PREFIX = "index/"


def _index_name(version: int) -> str:
    return f"index-{version}"


def _subkey_context(controller_id: str, name: str) -> bytes:
    return b"mizaic/v1/controller-subkey" + envelope.canonical(controller_id, name)


def _wrap_subkey(
    controller_id: str, ck: bytes, ck_version: int, name: str, key: bytes,
    random_bytes: Callable[[int], bytes],
) -> str:
    return base64.b64encode(envelope.wrap_key(
        ck, key, wrapping_key_version=ck_version,
        context=_subkey_context(controller_id, name), nonce=random_bytes(12),
    )).decode("ascii")


@dataclass(frozen=True, repr=False)
class _ControllerState:
    """The unwrapped controller keys. Never printed."""

    current: int
    versions: dict[int, bytes]
    index_current: int
    index_keys: dict[int, bytes]
    audit: bytes
    data: bytes
    rotated_at: str
    index_rotated_at: str

    def __repr__(self) -> str:
        return f"_ControllerState(current={self.current}, index={self.index_current})"


_K = TypeVar("_K")
_V = TypeVar("_V")


class TTLCache(Generic[_K, _V]):
    """A thread-safe LRU cache whose entries expire after ``ttl`` seconds."""

    def __init__(self, ttl: float, max_entries: int, clock: Callable[[], float]) -> None:
        self._ttl = ttl
        self._max = max_entries
        self._clock = clock
        self._data: OrderedDict[_K, tuple[float, _V]] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, key: _K) -> _V | None:
        with self._lock:
            item = self._data.get(key)
            if item is None:
                return None
            if item[0] <= self._clock():
                del self._data[key]
                return None
            self._data.move_to_end(key)
            return item[1]

    def put(self, key: _K, value: _V) -> None:
        with self._lock:
            self._data[key] = (self._clock() + self._ttl, value)
            self._data.move_to_end(key)
            while len(self._data) > self._max:
                self._data.popitem(last=False)

    def discard(self, key: _K) -> None:
        with self._lock:
            self._data.pop(key, None)

    def clear(self) -> None:
        with self._lock:
            self._data.clear()


@dataclass(frozen=True, repr=False)
class SubjectKey:
    """An unwrapped subject key. Never printed."""

    skid: str
    version: int
    key: bytes
    restricted: bool = False
    wrapped_under: int = 0

    @property
    def skid_bytes(self) -> bytes:
        return base64.b32decode(self.skid.upper() + "======")

    def __repr__(self) -> str:
        return f"SubjectKey(skid={self.skid!r}, version={self.version})"


def _integrity() -> IntegrityError:
    return IntegrityError("stored data failed integrity verification")


def _load_json(data: bytes, fmt: str) -> dict[str, Any]:
    try:
        doc = json.loads(data)
    except (ValueError, UnicodeDecodeError):
        raise _integrity() from None
    if not isinstance(doc, dict) or doc.get("format") != fmt or doc.get("v") != 1:
        raise _integrity()
    return doc


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def _unb64(value: object) -> bytes:
    if not isinstance(value, str):
        raise _integrity()
    try:
        return base64.b64decode(value, validate=True)
    except ValueError:
        raise _integrity() from None


class ControllerKeys:
    """Loads, caches and creates one controller's keys. Thread-safe."""

    def __init__(
        self,
        controller_id: str,
        container: Container,
        keyring: Keyring,
        *,
        ttl: float = 300.0,
        clock: Callable[[], float] = time.monotonic,
        random_bytes: Callable[[int], bytes] = os.urandom,
    ) -> None:
        self.controller_id = controller_id
        self._container = container
        self._keyring = keyring
        self._random = random_bytes
        self._ttl = ttl
        self._clock = clock
        self._lock = threading.Lock()
        self._controller: tuple[float, _ControllerState] | None = None
        self._subjects: TTLCache[str, SubjectKey] = TTLCache(ttl, 100_000, clock)
        self._index: TTLCache[str, str] = TTLCache(ttl, 100_000, clock)

    # -- set-up --------------------------------------------------------------------------

    @staticmethod
    def initialise(
        controller_id: str,
        container: Container,
        keyring: Keyring,
        kek_id: str,
        created_at: str,
        random_bytes: Callable[[int], bytes] = os.urandom,
    ) -> None:
        """Create the controller key and its sub-keys (create-only; idempotent).

        :raises KeyManagementError: if the keyring fails.
        """
        controller_key = random_bytes(32)
        wrapped = keyring.wrap_key(kek_id, controller_key)
        subkeys = {
            name: _wrap_subkey(controller_id, controller_key, 1, name, random_bytes(32),
                               random_bytes)
            for name in (_index_name(1), "audit", "data")
        }
        doc = {
            "format": "mizaic.controller-keys",
            "v": 1,
            "current": 1,
            "rotated_at": created_at,
            "versions": {"1": {"wrapped": wrapped.to_json(), "created_at": created_at}},
            "subkeys": subkeys,
            "index_current": 1,
            "index_rotated_at": created_at,
        }
        try:
            container.put(CONTROLLER_KEYS, json.dumps(doc).encode(), what="controller keys")
        except ConflictError:
            return

    # -- controller key ------------------------------------------------------------------

    def _read_doc(self) -> tuple[dict[str, Any], str]:
        stored = self._container.get(CONTROLLER_KEYS, what="controller keys")
        return _load_json(stored.data, "mizaic.controller-keys"), stored.etag

    def _load_controller(self) -> _ControllerState:
        with self._lock:
            cached = self._controller
            if cached is not None and cached[0] > self._clock():
                return cached[1]
        doc, _ = self._read_doc()
        state = self._unwrap_doc(doc)
        with self._lock:
            self._controller = (self._clock() + self._ttl, state)
        return state

    def _unwrap_doc(self, doc: dict[str, Any]) -> _ControllerState:
        try:
            current = int(doc["current"])
            versions: dict[int, bytes] = {}
            for version, entry in doc["versions"].items():
                versions[int(version)] = self._keyring.unwrap_key(
                    WrappedKey.from_json(entry["wrapped"])
                )
            subkeys: dict[str, bytes] = {}
            for name, wrapped_b64 in doc["subkeys"].items():
                wrapped = _unb64(wrapped_b64)
                ck = versions.get(envelope.wrapped_key_version(wrapped))
                if ck is None:
                    raise _integrity()
                subkeys[name] = envelope.unwrap_key(
                    ck, wrapped, context=_subkey_context(self.controller_id, name)
                )
            index_current = int(doc["index_current"])
            index_keys = {
                int(name.removeprefix("index-")): key
                for name, key in subkeys.items() if name.startswith("index-")
            }
            state = _ControllerState(
                current=current, versions=versions, index_current=index_current,
                index_keys=index_keys, audit=subkeys["audit"], data=subkeys["data"],
                rotated_at=str(doc.get("rotated_at", "")),
                index_rotated_at=str(doc.get("index_rotated_at", "")),
            )
            if current not in versions or index_current not in index_keys:
                raise _integrity()
        except (KeyError, TypeError, ValueError, AttributeError):
            raise _integrity() from None
        return state

    def refresh(self) -> None:
        """Forget the cached controller keys (after a rotation elsewhere)."""
        with self._lock:
            self._controller = None

    def controller_key(self) -> tuple[int, bytes]:
        """The current controller key and its version."""
        state = self._load_controller()
        return state.current, state.versions[state.current]

    def data_key(self) -> bytes:
        """The key for controller-level documents (instructions, holds, requests)."""
        return self._load_controller().data

    def audit_key(self, version: int | None = None) -> tuple[int, bytes]:
        """The checkpoint-sealing key. There is one audit key (version 1), kept across
        controller-key rotations so that old checkpoints stay verifiable.

        :raises IntegrityError: for any other version.
        """
        if version not in (None, 1):
            raise _integrity()
        return 1, audit_key(self._load_controller().audit, self.controller_id)

    def blind_index(self, subject: SubjectId, version: int | None = None) -> str:
        """The subject's blind index under the current (or a given) index key."""
        state = self._load_controller()
        key = state.index_keys.get(state.index_current if version is None else version)
        if key is None:
            raise _integrity()
        return blind_index(key, self.controller_id, subject.kind, subject.value)

    def index_names(self, subject: SubjectId) -> list[str]:
        """The subject's blind index under every index key version still held."""
        state = self._load_controller()
        return [
            blind_index(state.index_keys[v], self.controller_id, subject.kind, subject.value)
            for v in sorted(state.index_keys, reverse=True)
        ]

    def _index_mac(self, version: int, index: str, skid: str) -> str:
        key = self._load_controller().index_keys.get(version)
        if key is None:
            raise _integrity()
        return hmac.new(
            key, b"mizaic/v1/index-entry" + envelope.canonical(self.controller_id, index, skid),
            hashlib.sha256,
        ).hexdigest()

    def index_entry(self, index: str, skid: str, version: int) -> bytes:
        """An index entry, authenticated under the index key so storage cannot point a
        subject's identifier at another subject's key."""
        return json.dumps({
            "format": "mizaic.subject-index", "v": 1, "skid": skid, "iv": version,
            "mac": self._index_mac(version, index, skid),
        }).encode()

    def read_index_entry(self, index: str, data: bytes) -> tuple[str, int]:
        """Verify an index entry; return its subject key id and index version.

        :raises IntegrityError: if it was altered or moved.
        """
        doc = _load_json(data, "mizaic.subject-index")
        skid = doc.get("skid")
        version = doc.get("iv")
        mac = doc.get("mac")
        if not isinstance(skid, str) or not isinstance(version, int) or not isinstance(mac, str):
            raise _integrity()
        try:
            ids.opaque_id("s" + skid)
        except ValueError:
            raise _integrity() from None
        if not hmac.compare_digest(self._index_mac(version, index, skid), mac):
            raise _integrity()
        return skid, version

    # -- rotation ------------------------------------------------------------------------

    def _update_doc(self, change: Callable[[dict[str, Any], _ControllerState], None]) -> None:
        for _attempt in range(5):
            doc, etag = self._read_doc()
            state = self._unwrap_doc(doc)
            change(doc, state)
            try:
                self._container.put(CONTROLLER_KEYS, json.dumps(doc).encode(), etag=etag,
                                    what="controller keys")
            except ConflictError:
                continue
            self.refresh()
            return
        raise ConflictError("the controller keys changed concurrently; try again")

    def rewrap_under_kek(self, kek_id: str) -> None:
        """Re-wrap every controller key version under the KEK version ``kek_id``."""

        def change(doc: dict[str, Any], state: _ControllerState) -> None:
            for version, key in state.versions.items():
                doc["versions"][str(version)]["wrapped"] = self._keyring.wrap_key(
                    kek_id, key
                ).to_json()

        self._update_doc(change)

    def add_controller_key(self, kek_id: str, now: str) -> int:
        """Make a new controller key version current; re-wrap the sub-keys under it.

        Earlier versions stay, to unwrap subject keys not yet re-wrapped.
        """
        added: list[int] = []

        def change(doc: dict[str, Any], state: _ControllerState) -> None:
            version = max(state.versions) + 1
            key = self._random(32)
            doc["versions"][str(version)] = {
                "wrapped": self._keyring.wrap_key(kek_id, key).to_json(), "created_at": now,
            }
            doc["current"] = version
            doc["rotated_at"] = now
            named = {"audit": state.audit, "data": state.data}
            named.update({_index_name(v): k for v, k in state.index_keys.items()})
            doc["subkeys"] = {
                name: _wrap_subkey(self.controller_id, key, version, name, sub, self._random)
                for name, sub in named.items()
            }
            added.append(version)

        self._update_doc(change)
        return added[-1]

    def retire_controller_keys(self) -> list[int]:
        """Remove every controller key version but the current one (destroying them)."""
        retired: list[int] = []

        def change(doc: dict[str, Any], state: _ControllerState) -> None:
            retired.clear()
            for version in list(state.versions):
                if version != state.current:
                    del doc["versions"][str(version)]
                    retired.append(version)

        self._update_doc(change)
        self._subjects.clear()
        return retired

    def add_index_key(self, now: str) -> int:
        """Make a new blind-index key version current (lookups also try older ones)."""
        added: list[int] = []

        def change(doc: dict[str, Any], state: _ControllerState) -> None:
            version = max(state.index_keys) + 1
            doc["subkeys"][_index_name(version)] = _wrap_subkey(
                self.controller_id, state.versions[state.current], state.current,
                _index_name(version), self._random(32), self._random,
            )
            doc["index_current"] = version
            doc["index_rotated_at"] = now
            added.append(version)

        self._update_doc(change)
        self._index.clear()
        return added[-1]

    def retire_index_keys(self) -> list[int]:
        """Remove every blind-index key version but the current one."""
        retired: list[int] = []

        def change(doc: dict[str, Any], state: _ControllerState) -> None:
            retired.clear()
            for version in list(state.index_keys):
                if version != state.index_current:
                    del doc["subkeys"][_index_name(version)]
                    retired.append(version)

        self._update_doc(change)
        self._index.clear()
        return retired

    def current_wrapped_kek_id(self) -> str:
        """The KEK version that wraps the current controller key."""
        doc, _ = self._read_doc()
        try:
            return str(doc["versions"][str(doc["current"])]["wrapped"]["key_id"])
        except (KeyError, TypeError):
            raise _integrity() from None

    def state(self) -> _ControllerState:
        """The controller keys as currently stored (bypassing the cache)."""
        self.refresh()
        return self._load_controller()

    # -- subject keys --------------------------------------------------------------------

    def _unwrap_subject(self, skid: str, data: bytes) -> SubjectKey:
        doc = _load_json(data, "mizaic.subject-key")
        if doc.get("skid") != skid:
            raise _integrity()
        version = doc.get("key_version")
        restricted = doc.get("restricted", False)
        if not isinstance(version, int) or not isinstance(restricted, bool):
            raise _integrity()
        wrapped = _unb64(doc.get("wrapped"))
        ck_version = envelope.wrapped_key_version(wrapped)
        ck = self._load_controller().versions.get(ck_version)
        if ck is None:
            self.refresh()  # rotated elsewhere since we cached the controller keys
            ck = self._load_controller().versions.get(ck_version)
        if ck is None:
            raise _integrity()
        key = envelope.unwrap_key(
            ck, wrapped,
            context=subject_key_context(self.controller_id, skid, version,
                                        restricted=restricted),
        )
        return SubjectKey(skid=skid, version=version, key=key, restricted=restricted,
                          wrapped_under=ck_version)

    def _subject_doc(self, key: SubjectKey) -> bytes:
        ck_version, ck = self.controller_key()
        wrapped = envelope.wrap_key(
            ck,
            key.key,
            wrapping_key_version=ck_version,
            context=subject_key_context(self.controller_id, key.skid, key.version,
                                        restricted=key.restricted),
            nonce=self._random(12),
        )
        return json.dumps({
            "format": "mizaic.subject-key",
            "v": 1,
            "skid": key.skid,
            "key_version": key.version,
            "restricted": key.restricted,
            "wrapped": _b64(wrapped),
        }).encode()

    def set_restricted(self, skid: str, restricted: bool) -> SubjectKey:
        """Re-wrap the subject's key with its new restriction state (etag-conditional).

        :raises NotFoundError: if the subject has no key.
        :raises ConflictError: if the key document changed concurrently.
        """
        stored = self._container.get(SUBJECT_PREFIX + skid, what="subject key")
        current = self._unwrap_subject(skid, stored.data)
        updated = SubjectKey(skid=skid, version=current.version, key=current.key,
                             restricted=restricted)
        self._container.put(SUBJECT_PREFIX + skid, self._subject_doc(updated),
                            etag=stored.etag, what="subject key")
        self._subjects.put(skid, updated)
        return updated

    def subject_key(self, skid: str) -> SubjectKey:
        """The key of subject ``skid``.

        :raises NotFoundError: if the key does not exist (never created, or erased).
        :raises IntegrityError: if the stored key fails verification.
        """
        cached = self._subjects.get(skid)
        if cached is not None:
            return cached
        stored = self._container.get(SUBJECT_PREFIX + skid, what="record")
        key = self._unwrap_subject(skid, stored.data)
        self._subjects.put(skid, key)
        return key

    def find_subject(self, subject: SubjectId) -> str | None:
        """The subject key id of ``subject``, or ``None`` if it has none.

        Tries the current blind-index key first, then older ones still held (while a
        re-index after an index-key rotation is under way).
        """
        for index in self.index_names(subject):
            cached = self._index.get(index)
            if cached is not None:
                return cached
            try:
                stored = self._container.get(INDEX_PREFIX + index, what="subject index entry")
            except NotFoundError:
                continue
            skid, _version = self.read_index_entry(index, stored.data)
            try:
                self.subject_key(skid)
            except NotFoundError:
                # the subject was erased (its key destroyed) but this entry survived, e.g.
                # written under an index key the erasing process did not know yet
                self._container.delete(INDEX_PREFIX + index, etag=stored.etag,
                                       what="subject index entry")
                continue
            self._index.put(index, skid)
            return skid
        return None

    def rewrap_subject(self, skid: str) -> bool:
        """Re-wrap a subject key under the current controller key (etag-conditional).

        :returns: whether it needed re-wrapping.
        """
        stored = self._container.get(SUBJECT_PREFIX + skid, what="subject key")
        key = self._unwrap_subject(skid, stored.data)
        if key.wrapped_under == self.controller_key()[0]:
            return False
        self._container.put(SUBJECT_PREFIX + skid, self._subject_doc(key), etag=stored.etag,
                            what="subject key")
        return True

    def subject_for_write(
        self, subject: SubjectId, *, proposed_skid: str | None = None,
        known_missing: bool = False,
    ) -> SubjectKey:
        """The subject's key, created (with its index entry) on first use.

        Two writers racing to create the same subject agree: the index entry is
        create-only, and the loser adopts the winner's key. ``known_missing`` skips the
        lookup when the caller has just made it (the race is settled all the same).
        """
        if not known_missing:
            skid = self.find_subject(subject)
            if skid is not None:
                return self.subject_key(skid)
        new_skid = proposed_skid or ids.b32(self._random(16))
        created = SubjectKey(skid=new_skid, version=1, key=self._random(32))
        self._container.put(
            SUBJECT_PREFIX + new_skid, self._subject_doc(created), what="subject key"
        )
        version = self._load_controller().index_current
        index = self.blind_index(subject, version)
        try:
            self._container.put(
                INDEX_PREFIX + index, self.index_entry(index, new_skid, version),
                what="subject index entry",
            )
        except ConflictError:
            self._container.delete(SUBJECT_PREFIX + new_skid, what="subject key")
            winner = self.find_subject(subject)
            if winner is None:
                raise KeyManagementError("subject key creation raced with erasure") from None
            return self.subject_key(winner)
        self._subjects.put(new_skid, created)
        self._index.put(index, new_skid)
        return created

    def forget(self, skid: str, indexes: list[str] | None = None) -> None:
        """Drop cached keys of a subject (after erasure)."""
        self._subjects.discard(skid)
        for index in indexes or []:
            self._index.discard(index)
