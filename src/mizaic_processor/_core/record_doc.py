"""The stored record document (format ``mizaic.record`` v1). Pure.

A record is one small JSON blob::

    {"format": "mizaic.record", "v": 1, "rid": <record id>, "cat": <category code>,
     "ver": <version>, "c": <content id or null>,
     "m": <field envelope of the meta document>,
     "f": {<keyed tag of field name>: <field envelope of the JSON value>, ...}}

Only the record id, category code, version and content id are plaintext; they are
repeated inside the authenticated meta document and checked on every read, so editing
them in storage is detected. Field names are replaced by keyed tags (a field name can
itself be clinical). Each field is its own envelope, so a read decrypts only the fields
asked for.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from mizaic_processor._core import envelope
from mizaic_processor._core.envelope import RecordKeys
from mizaic_processor.errors import IntegrityError

META_FIELD = "$meta"
FORMAT = "mizaic.record"


def _integrity() -> IntegrityError:
    return IntegrityError("stored data failed integrity verification")


@dataclass(frozen=True)
class RecordDoc:
    """The parsed, not yet decrypted, record document."""

    record_id: str
    category: str
    version: int
    content_id: str | None
    meta: bytes
    fields: dict[str, bytes]


# Built once (``json.dumps`` with non-default options builds a new encoder on every call).
# The encoder and the decoder keep no state between calls: sharing them is thread-safe.
_ENCODER = json.JSONEncoder(
    separators=(",", ":"), sort_keys=True, ensure_ascii=False, allow_nan=False
)
_DECODER = json.JSONDecoder()


def dumps_json(value: Any) -> bytes:
    """Canonical compact JSON (sorted keys, UTF-8; NaN and infinities refused).

    :raises ValueError: for values JSON cannot represent.
    """
    return _ENCODER.encode(value).encode()


def _loads(plain: bytes) -> Any:
    """Parse a decrypted JSON document.

    The library writes :func:`dumps_json` output (UTF-8, no surrounding whitespace), which
    parses in one scan; anything else goes through ``json.loads``, so exactly the same
    documents are accepted as before.

    :raises IntegrityError: if the bytes are not JSON.
    """
    try:
        text = plain.decode("utf-8")
        value, end = _DECODER.raw_decode(text)
        if end == len(text):
            return value
    except ValueError:
        pass
    try:
        return json.loads(plain)
    except ValueError:
        raise _integrity() from None


def encrypt_fields(
    keys: RecordKeys,
    values: Mapping[str, Any],
    *,
    controller_id: str,
    record_id: str,
    nonce: Callable[[], bytes],
) -> dict[str, bytes]:
    """Encrypt each field value (JSON) into its own envelope, keyed by its tag."""
    encode = _ENCODER.encode
    return envelope.encrypt_tagged_fields(
        keys,
        [(name, encode(value).encode()) for name, value in values.items()],  # dumps_json
        controller_id=controller_id,
        record_id=record_id,
        nonce=nonce,
    )


def encrypt_meta(
    keys: RecordKeys, meta: Mapping[str, Any], *, controller_id: str, record_id: str,
    nonce: bytes,
) -> bytes:
    """Encrypt the meta document (subject, events, content info, names, timestamps)."""
    return envelope.encrypt_field(
        keys, dumps_json(meta), controller_id=controller_id, record_id=record_id,
        field_path=META_FIELD, nonce=nonce,
    )


def fields_digest(fields: Mapping[str, bytes]) -> str:
    """SHA-256 over every field envelope, in tag order. Kept in the sealed meta document
    (re-encrypted on every write), so storage cannot swap in an older envelope of one
    field, drop a field, or add one, without the read failing."""
    digest = hashlib.sha256(b"mizaic/v1/fields")
    for tag in sorted(fields):
        raw = tag.encode("utf-8")
        env = fields[tag]
        digest.update(len(raw).to_bytes(4, "big") + raw + len(env).to_bytes(4, "big"))
        digest.update(env)
    return digest.hexdigest()


def encode(doc: RecordDoc) -> bytes:
    """Serialise a record document."""
    return dumps_json(
        {
            "format": FORMAT,
            "v": 1,
            "rid": doc.record_id,
            "cat": doc.category,
            "ver": doc.version,
            "c": doc.content_id,
            "m": base64.b64encode(doc.meta).decode("ascii"),
            "f": {tag: base64.b64encode(env).decode("ascii") for tag, env in doc.fields.items()},
        }
    )


def decode(data: bytes) -> RecordDoc:
    """Parse a record document; any malformation is an integrity failure.

    :raises IntegrityError: if the bytes are not a v1 record document.
    """
    try:
        raw = json.loads(data)
        if not isinstance(raw, dict) or raw.get("format") != FORMAT or raw.get("v") != 1:
            raise _integrity()
        fields = raw["f"]
        if not isinstance(fields, dict):
            raise _integrity()
        version = raw["ver"]
        content_id = raw["c"]
        if not isinstance(version, int) or isinstance(version, bool):
            raise _integrity()
        if content_id is not None and not isinstance(content_id, str):
            raise _integrity()
        return RecordDoc(
            record_id=str(raw["rid"]),
            category=str(raw["cat"]),
            version=version,
            content_id=content_id,
            meta=base64.b64decode(raw["m"], validate=True),
            fields={
                str(tag): base64.b64decode(env, validate=True) for tag, env in fields.items()
            },
        )
    except (ValueError, KeyError, TypeError, UnicodeDecodeError, RecursionError):
        raise _integrity() from None


def decrypt_meta(
    keys: RecordKeys, doc: RecordDoc, *, controller_id: str, record_id: str
) -> dict[str, Any]:
    """Decrypt the meta document and check the plaintext header against it.

    :raises IntegrityError: on failure, or if the plaintext header was edited.
    """
    if doc.record_id != record_id:
        raise _integrity()
    plain = envelope.decrypt_field(
        keys, doc.meta, controller_id=controller_id, record_id=record_id, field_path=META_FIELD
    )
    meta = _loads(plain)
    if (
        not isinstance(meta, dict)
        or meta.get("category") != doc.category
        or meta.get("version") != doc.version
        or meta.get("content_id") != doc.content_id
        or not isinstance(meta.get("fields_digest"), str)
        or not hmac.compare_digest(meta["fields_digest"], fields_digest(doc.fields))
    ):
        raise _integrity()
    return meta


def listed_names(meta: dict[str, Any], doc: RecordDoc) -> list[str]:
    """The field names the sealed meta document lists for this record.

    The meta's digest already binds the exact set of envelopes; a count mismatch here
    is a cheap second check that costs no cryptography.

    :raises IntegrityError: if the list is malformed or does not match the envelopes.
    """
    names = meta.get("names")
    if (
        not isinstance(names, list)
        or not all(isinstance(n, str) for n in names)
        or len(set(names)) != len(doc.fields)
    ):
        raise _integrity()
    return names


def decrypt_fields(
    keys: RecordKeys,
    doc: RecordDoc,
    meta: dict[str, Any],
    wanted: Iterable[str] | None,
    *,
    controller_id: str,
    record_id: str,
) -> dict[str, Any]:
    """Decrypt every listed field, or only the ``wanted`` ones (names the record does
    not have are skipped). Each field's keyed tag is computed once.

    :raises IntegrityError: if a field fails verification, or a field the sealed meta
        lists has no envelope.
    """
    listed = listed_names(meta, doc)
    present = set(listed)
    names = listed if wanted is None else list(wanted)
    envelopes = doc.fields
    out: dict[str, Any] = {}
    for name, tag in zip(names, envelope.field_tags(keys, names), strict=True):
        env = envelopes.get(tag)
        if env is None:
            if name in present:
                raise _integrity()
            continue
        out[name] = _loads(envelope.decrypt_field(
            keys, env, controller_id=controller_id, record_id=record_id, field_path=name
        ))
    return out
