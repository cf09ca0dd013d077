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
    controller_data_key,
    index_key_context,
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
        self._controller: tuple[float, int, dict[int, bytes], bytes] | None = None
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
        """Create the controller key and blind-index key (create-only; idempotent).

        :raises KeyManagementError: if the keyring fails.
        """
        controller_key = random_bytes(32)
        index_key = random_bytes(32)
        wrapped = keyring.wrap_key(kek_id, controller_key)
        wrapped_index = envelope.wrap_key(
            controller_key,
            index_key,
            wrapping_key_version=1,
            context=index_key_context(controller_id, 1),
            nonce=random_bytes(12),
        )
        doc = {
            "format": "mizaic.controller-keys",
            "v": 1,
            "current": 1,
            "versions": {"1": {"wrapped": wrapped.to_json(), "created_at": created_at}},
            "index": {"version": 1, "wrapped": _b64(wrapped_index)},
        }
        try:
            container.put(CONTROLLER_KEYS, json.dumps(doc).encode(), what="controller keys")
        except ConflictError:
            return

    # -- controller key ------------------------------------------------------------------

    def _load_controller(self) -> tuple[int, dict[int, bytes], bytes]:
        with self._lock:
            cached = self._controller
            if cached is not None and cached[0] > self._clock():
                return cached[1], cached[2], cached[3]
        stored = self._container.get(CONTROLLER_KEYS, what="controller keys")
        doc = _load_json(stored.data, "mizaic.controller-keys")
        try:
            current = int(doc["current"])
            versions: dict[int, bytes] = {}
            for version, entry in doc["versions"].items():
                key = self._keyring.unwrap_key(WrappedKey.from_json(entry["wrapped"]))
                versions[int(version)] = key
            index = doc["index"]
            ck = versions[current]
            index_key = envelope.unwrap_key(
                ck,
                _unb64(index["wrapped"]),
                context=index_key_context(self.controller_id, int(index["version"])),
            )
        except (KeyError, TypeError, ValueError, AttributeError):
            raise _integrity() from None
        with self._lock:
            self._controller = (self._clock() + self._ttl, current, versions, index_key)
        return current, versions, index_key

    def controller_key(self) -> tuple[int, bytes]:
        """The current controller key and its version."""
        current, versions, _ = self._load_controller()
        return current, versions[current]

    def data_key(self) -> bytes:
        """The key for controller-level documents (instructions, holds, requests)."""
        _, key = self.controller_key()
        return controller_data_key(key, self.controller_id)

    def audit_key(self, version: int | None = None) -> tuple[int, bytes]:
        """The checkpoint-sealing key of controller key ``version`` (current if None).

        :raises IntegrityError: if that controller key version is unknown.
        """
        current, versions, _ = self._load_controller()
        version = current if version is None else version
        key = versions.get(version)
        if key is None:
            raise _integrity()
        return version, audit_key(key, self.controller_id)

    def blind_index(self, subject: SubjectId) -> str:
        """The subject's blind index under this controller's index key."""
        _, _, index_key = self._load_controller()
        return blind_index(index_key, self.controller_id, subject.kind, subject.value)

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
        _, versions, _ = self._load_controller()
        ck = versions.get(ck_version)
        if ck is None:
            raise _integrity()
        key = envelope.unwrap_key(
            ck, wrapped,
            context=subject_key_context(self.controller_id, skid, version,
                                        restricted=restricted),
        )
        return SubjectKey(skid=skid, version=version, key=key, restricted=restricted)

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
        """The subject key id of ``subject``, or ``None`` if it has none."""
        index = self.blind_index(subject)
        cached = self._index.get(index)
        if cached is not None:
            return cached
        try:
            stored = self._container.get(INDEX_PREFIX + index, what="subject index entry")
        except NotFoundError:
            return None
        doc = _load_json(stored.data, "mizaic.subject-index")
        skid = doc.get("skid")
        try:
            ids.opaque_id("s" + str(skid))
        except ValueError:
            raise _integrity() from None
        self._index.put(index, str(skid))
        return str(skid)

    def subject_for_write(
        self, subject: SubjectId, *, proposed_skid: str | None = None
    ) -> SubjectKey:
        """The subject's key, created (with its index entry) on first use.

        Two writers racing to create the same subject agree: the index entry is
        create-only, and the loser adopts the winner's key.
        """
        skid = self.find_subject(subject)
        if skid is not None:
            return self.subject_key(skid)
        new_skid = proposed_skid or ids.b32(self._random(16))
        created = SubjectKey(skid=new_skid, version=1, key=self._random(32))
        self._container.put(
            SUBJECT_PREFIX + new_skid, self._subject_doc(created), what="subject key"
        )
        index = self.blind_index(subject)
        index_doc = {"format": "mizaic.subject-index", "v": 1, "skid": new_skid}
        try:
            self._container.put(
                INDEX_PREFIX + index, json.dumps(index_doc).encode(), what="subject index entry"
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

    def forget(self, skid: str, index: str | None = None) -> None:
        """Drop cached keys of a subject (after erasure)."""
        self._subjects.discard(skid)
        if index is not None:
            self._index.discard(index)
