"""The per-record fast paths of the envelope and record-document code give exactly the bytes
and checks of the plain definitions.

``derive_record_keys`` precomputes per record what every field needs (the AES-GCM cipher, a
keyed HMAC, the header before the nonce, the binding prefix); ``encrypt_tagged_fields`` and
``field_tags`` do a whole record in one pass; ``record_doc`` shares one JSON encoder and
scanner. None of that may change a byte of output or let any tampering through.
"""

from __future__ import annotations

import dataclasses
import hashlib
import hmac
import itertools
import json
import math
import struct
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from hypothesis import given
from hypothesis import strategies as st

from mizaic_processor._core import record_doc
from mizaic_processor._core.envelope import (
    FIELD_HEADER_BYTES,
    NONCE_BYTES,
    RecordKeys,
    binding,
    canonical,
    decrypt_field,
    derive_record_keys,
    encrypt_field,
    encrypt_tagged_fields,
    field_tag,
    field_tags,
)
from mizaic_processor.errors import IntegrityError

SUBJECT_KEY = bytes(range(32))
SKID = bytes(range(0xA0, 0xB0))
KEY_VERSION = 7
CONTROLLER = "controller-0001"
RECORD = "record-0001"
KEYS = derive_record_keys(
    SUBJECT_KEY, skid=SKID, key_version=KEY_VERSION, controller_id=CONTROLLER, record_id=RECORD
)

VALUES: dict[str, Any] = {
    "diagnosis": "Paroxysmal atrial fibrillation",
    "codes": ["I48.0", "I10"],
    "observations": {"heart_rate": 61, "bp": [118, 72], "weight_kg": 80.5, "note": None},
    "page_count": 3,
    "flag": True,
    "café ☕": "naïve — ünïcode",
    "empty": "",
}


def _nonces(start: int = 1) -> Callable[[], bytes]:
    counter = itertools.count(start)
    return lambda: next(counter).to_bytes(NONCE_BYTES, "big")


def _reference_keys() -> dict[str, bytes]:
    """The record keys straight from the documented derivation."""
    okm = HKDF(
        algorithm=hashes.SHA256(),
        length=128,
        salt=None,
        info=b"mizaic/v1/record-keys"
        + canonical(CONTROLLER, SKID, struct.pack(">I", KEY_VERSION), RECORD),
    ).derive(SUBJECT_KEY)
    return {
        "field_key": okm[0:32],
        "commitment": okm[32:64],
        "tag_key": okm[64:96],
        "content_secret": okm[96:128],
    }


# -- keys and tags ---------------------------------------------------------------------


def test_derived_keys_match_the_documented_derivation() -> None:
    expected = _reference_keys()
    assert KEYS.field_key == expected["field_key"]
    assert KEYS.commitment == expected["commitment"]
    assert KEYS.tag_key == expected["tag_key"]
    assert KEYS.content_secret == expected["content_secret"]
    again = derive_record_keys(
        SUBJECT_KEY, skid=SKID, key_version=KEY_VERSION, controller_id=CONTROLLER,
        record_id=RECORD,
    )
    assert again == KEYS  # equality is over the key material, not the cached objects
    assert repr(again) == "RecordKeys(<redacted>)"


def test_derived_keys_are_exactly_what_the_dataclass_constructor_builds() -> None:
    # derive_record_keys fills the frozen instance's __dict__ directly, for speed
    rebuilt = RecordKeys(**vars(KEYS))
    assert vars(rebuilt) == vars(KEYS)
    assert [f.name for f in dataclasses.fields(RecordKeys)] == list(vars(KEYS))
    with pytest.raises(dataclasses.FrozenInstanceError):
        KEYS.field_key = bytes(32)  # type: ignore[misc]


@given(st.lists(st.text(max_size=80), max_size=20))
def test_field_tags_are_truncated_hmac_sha256_of_the_name(names: list[str]) -> None:
    expected = [
        hmac.new(KEYS.tag_key, name.encode("utf-8"), hashlib.sha256).digest()[:16].hex()
        for name in names
    ]
    assert field_tags(KEYS, names) == expected
    assert [field_tag(KEYS, name) for name in names] == expected


def test_field_tags_depend_on_the_record() -> None:
    other = derive_record_keys(
        SUBJECT_KEY, skid=SKID, key_version=KEY_VERSION, controller_id=CONTROLLER,
        record_id="record-0002",
    )
    assert field_tag(KEYS, "diagnosis") != field_tag(other, "diagnosis")
    # the keyed MAC is copied per tag, never consumed: the same name keeps its tag
    assert field_tag(KEYS, "diagnosis") == field_tag(KEYS, "diagnosis")


# -- field envelopes ---------------------------------------------------------------------


def _reference_field_envelope(plaintext: bytes, nonce: bytes, field_path: str,
                              controller_id: str = CONTROLLER,
                              record_id: str = RECORD) -> bytes:
    """A field envelope straight from the documented layout."""
    from cryptography.hazmat.primitives.ciphers.aead import AESGCM

    header = (
        b"MZ" + bytes([1, 1, 1]) + SKID + struct.pack(">I", KEY_VERSION) + KEYS.commitment
        + nonce
    )
    aad = header + b"mizaic/v1/bind" + canonical(controller_id, record_id, field_path)
    return header + AESGCM(KEYS.field_key).encrypt(nonce, plaintext, aad)


@pytest.mark.parametrize(
    ("controller_id", "record_id"),
    [(CONTROLLER, RECORD), ("controller-0002", RECORD), (CONTROLLER, "record-0002")],
    ids=["own-record", "other-controller", "other-record"],
)
def test_encrypt_field_matches_the_documented_layout(controller_id: str, record_id: str) -> None:
    nonce = bytes(range(NONCE_BYTES))
    envelope = encrypt_field(
        KEYS, b'"x"', controller_id=controller_id, record_id=record_id, field_path="f.g",
        nonce=nonce,
    )
    assert envelope == _reference_field_envelope(b'"x"', nonce, "f.g", controller_id, record_id)
    assert decrypt_field(
        KEYS, envelope, controller_id=controller_id, record_id=record_id, field_path="f.g"
    ) == b'"x"'


@pytest.mark.parametrize(
    ("controller_id", "record_id"),
    [(CONTROLLER, RECORD), ("controller-0002", RECORD), (CONTROLLER, "record-0002")],
    ids=["own-record", "other-controller", "other-record"],
)
def test_encrypt_tagged_fields_equals_one_encrypt_field_per_field(
    controller_id: str, record_id: str
) -> None:
    plaintexts = [(name, record_doc.dumps_json(value)) for name, value in VALUES.items()]
    batch = encrypt_tagged_fields(
        KEYS, plaintexts, controller_id=controller_id, record_id=record_id, nonce=_nonces()
    )
    nonce = _nonces()
    one_by_one = {
        field_tag(KEYS, name): encrypt_field(
            KEYS, plain, controller_id=controller_id, record_id=record_id, field_path=name,
            nonce=nonce(),
        )
        for name, plain in plaintexts
    }
    assert batch == one_by_one
    assert list(batch) == list(one_by_one)
    for name, plain in plaintexts:
        assert decrypt_field(
            KEYS, batch[field_tag(KEYS, name)], controller_id=controller_id,
            record_id=record_id, field_path=name,
        ) == plain


@pytest.mark.parametrize("bad", [b"", bytes(11), bytes(13)])
def test_encrypt_tagged_fields_refuses_a_wrongly_sized_nonce(bad: bytes) -> None:
    with pytest.raises(IntegrityError):
        encrypt_tagged_fields(
            KEYS, [("a", b"1")], controller_id=CONTROLLER, record_id=RECORD, nonce=lambda: bad
        )
    with pytest.raises(IntegrityError):
        encrypt_tagged_fields(
            KEYS, [("a", b"1")], controller_id="other", record_id=RECORD, nonce=lambda: bad
        )


ENVELOPE = encrypt_field(
    KEYS, b'{"a":1}', controller_id=CONTROLLER, record_id=RECORD, field_path="a",
    nonce=bytes(range(NONCE_BYTES)),
)


def _open(envelope: Any, *, controller_id: str = CONTROLLER, record_id: str = RECORD,
          field_path: str = "a") -> bytes:
    return decrypt_field(
        KEYS, envelope, controller_id=controller_id, record_id=record_id, field_path=field_path
    )


@pytest.mark.parametrize("index", range(len(ENVELOPE)))
def test_every_byte_of_a_field_envelope_is_authenticated(index: int) -> None:
    tampered = bytearray(ENVELOPE)
    tampered[index] ^= 0x01
    with pytest.raises(IntegrityError):
        _open(bytes(tampered))


def test_a_field_envelope_is_bound_to_its_controller_record_and_field() -> None:
    assert _open(ENVELOPE) == b'{"a":1}'
    for moved in ({"controller_id": "controller-0002"}, {"record_id": "record-0002"},
                  {"field_path": "b"}, {"field_path": "a\x00"}):
        with pytest.raises(IntegrityError):
            _open(ENVELOPE, **moved)


def test_keys_of_another_record_or_key_version_are_refused() -> None:
    for other in (
        derive_record_keys(SUBJECT_KEY, skid=SKID, key_version=KEY_VERSION,
                           controller_id=CONTROLLER, record_id="record-0002"),
        derive_record_keys(SUBJECT_KEY, skid=SKID, key_version=KEY_VERSION + 1,
                           controller_id=CONTROLLER, record_id=RECORD),
        derive_record_keys(SUBJECT_KEY, skid=bytes(16), key_version=KEY_VERSION,
                           controller_id=CONTROLLER, record_id=RECORD),
    ):
        with pytest.raises(IntegrityError):
            decrypt_field(other, ENVELOPE, controller_id=CONTROLLER, record_id=RECORD,
                          field_path="a")


def test_decrypt_field_takes_any_bytes_like_value_and_refuses_the_rest() -> None:
    assert _open(bytearray(ENVELOPE)) == b'{"a":1}'
    assert _open(memoryview(ENVELOPE)) == b'{"a":1}'
    for bad in (ENVELOPE.hex(), None, 7, ENVELOPE[: FIELD_HEADER_BYTES + 15], b""):
        with pytest.raises(IntegrityError):
            _open(bad)


def test_binding_is_unchanged() -> None:
    assert binding("c", "r", "f") == b"mizaic/v1/bind" + canonical("c", "r", "f")


# -- record documents --------------------------------------------------------------------


def _sealed_record(
    values: dict[str, Any], first_nonce: int = 1
) -> tuple[record_doc.RecordDoc, dict[str, bytes]]:
    nonce = _nonces(first_nonce)
    envelopes = record_doc.encrypt_fields(
        KEYS, values, controller_id=CONTROLLER, record_id=RECORD, nonce=nonce
    )
    meta = {
        "names": sorted(values), "category": "adult", "version": 2, "content_id": None,
        "fields_digest": record_doc.fields_digest(envelopes),
    }
    doc = record_doc.RecordDoc(
        record_id=RECORD, category="adult", version=2, content_id=None,
        meta=record_doc.encrypt_meta(
            KEYS, meta, controller_id=CONTROLLER, record_id=RECORD, nonce=nonce()
        ),
        fields=envelopes,
    )
    return doc, envelopes


def _read(doc: record_doc.RecordDoc, wanted: list[str] | None = None) -> dict[str, Any]:
    meta = record_doc.decrypt_meta(KEYS, doc, controller_id=CONTROLLER, record_id=RECORD)
    return record_doc.decrypt_fields(
        KEYS, doc, meta, wanted, controller_id=CONTROLLER, record_id=RECORD
    )


def test_record_fields_round_trip_and_are_each_their_own_envelope() -> None:
    doc, envelopes = _sealed_record(VALUES)
    assert _read(doc) == VALUES
    assert _read(doc, ["codes", "no-such-field", "flag"]) == {
        "codes": VALUES["codes"], "flag": True
    }
    assert set(envelopes) == set(field_tags(KEYS, VALUES))
    for name, value in VALUES.items():
        plain = decrypt_field(
            KEYS, envelopes[field_tag(KEYS, name)], controller_id=CONTROLLER,
            record_id=RECORD, field_path=name,
        )
        assert plain == json.dumps(
            value, separators=(",", ":"), sort_keys=True, ensure_ascii=False, allow_nan=False
        ).encode()
    assert record_doc.decode(record_doc.encode(doc)) == doc


def _with_fields(doc: record_doc.RecordDoc, fields: dict[str, bytes]) -> record_doc.RecordDoc:
    return record_doc.RecordDoc(
        record_id=doc.record_id, category=doc.category, version=doc.version,
        content_id=doc.content_id, meta=doc.meta, fields=fields,
    )


def _tamperings(envelopes: dict[str, bytes]) -> Iterator[dict[str, bytes]]:
    tags = sorted(envelopes)
    first, second = tags[0], tags[1]
    flipped = bytearray(envelopes[first])
    flipped[-1] ^= 0x80
    yield {**envelopes, first: bytes(flipped)}  # altered
    yield {**envelopes, first: envelopes[second], second: envelopes[first]}  # swapped
    yield {tag: env for tag, env in envelopes.items() if tag != first}  # dropped
    yield {**envelopes, "0" * 32: envelopes[first]}  # added
    other, _ = _sealed_record(VALUES, first_nonce=1000)
    assert other.fields[first] != envelopes[first]
    yield {**envelopes, first: other.fields[first]}  # an older envelope of the same field


@pytest.mark.parametrize("wanted", [None, ["diagnosis"], ["no-such-field"]])
def test_any_change_to_the_envelopes_fails_every_read(wanted: list[str] | None) -> None:
    doc, envelopes = _sealed_record(VALUES)
    for fields in _tamperings(envelopes):
        with pytest.raises(IntegrityError):
            _read(_with_fields(doc, fields), wanted)


def test_a_listed_field_without_its_envelope_fails_even_if_the_digest_was_resealed() -> None:
    # A meta document that lists a name no envelope carries (as if written by a buggy or
    # hostile writer holding the keys) must not read as a record without that field.
    nonce = _nonces()
    envelopes = record_doc.encrypt_fields(
        KEYS, {"a": 1}, controller_id=CONTROLLER, record_id=RECORD, nonce=nonce
    )
    meta = {"names": ["b"], "category": "adult", "version": 1, "content_id": None,
            "fields_digest": record_doc.fields_digest(envelopes)}
    doc = record_doc.RecordDoc(
        record_id=RECORD, category="adult", version=1, content_id=None,
        meta=record_doc.encrypt_meta(
            KEYS, meta, controller_id=CONTROLLER, record_id=RECORD, nonce=nonce()
        ),
        fields=envelopes,
    )
    for wanted in (None, ["b"]):
        with pytest.raises(IntegrityError):
            _read(doc, wanted)


def test_the_plaintext_header_is_checked_against_the_sealed_meta() -> None:
    doc, envelopes = _sealed_record(VALUES)
    for edited in (
        record_doc.RecordDoc(RECORD, "child", 2, None, doc.meta, envelopes),
        record_doc.RecordDoc(RECORD, "adult", 3, None, doc.meta, envelopes),
        record_doc.RecordDoc(RECORD, "adult", 2, "content-1", doc.meta, envelopes),
        record_doc.RecordDoc("record-0002", "adult", 2, None, doc.meta, envelopes),
    ):
        with pytest.raises(IntegrityError):
            _read(edited)


# -- JSON ---------------------------------------------------------------------------------

JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text()
    | st.floats(allow_nan=False, allow_infinity=False),
    lambda children: st.lists(children, max_size=4)
    | st.dictionaries(st.text(max_size=8), children, max_size=4),
    max_leaves=20,
)


@given(JSON_VALUES)
def test_dumps_json_is_the_canonical_json_dumps(value: Any) -> None:
    expected = json.dumps(
        value, separators=(",", ":"), sort_keys=True, ensure_ascii=False, allow_nan=False
    ).encode()
    assert record_doc.dumps_json(value) == expected
    assert record_doc._loads(expected) == value


@pytest.mark.parametrize("value", [math.nan, math.inf, [-math.inf], {"a": {1, 2}}, b"x"])
def test_dumps_json_refuses_what_json_cannot_represent(value: Any) -> None:
    with pytest.raises((ValueError, TypeError)):
        record_doc.dumps_json(value)


def test_dumps_json_refuses_a_cycle() -> None:
    cyclic: list[Any] = []
    cyclic.append(cyclic)
    with pytest.raises(ValueError):
        record_doc.dumps_json(cyclic)


@pytest.mark.parametrize(
    ("plain", "value"),
    [
        (b'{"a":[1,2.5,null,true]}', {"a": [1, 2.5, None, True]}),
        (b' {"a": 1} \n', {"a": 1}),  # whitespace: parsed as json.loads always did
        ('"\u00e9"'.encode("utf-16"), "\u00e9"),  # so are the UTF-16/32 encodings
        (b"null", None),
    ],
)
def test_loads_accepts_what_json_loads_accepts(plain: bytes, value: Any) -> None:
    assert record_doc._loads(plain) == value
    assert math.isnan(record_doc._loads(b"NaN"))


@pytest.mark.parametrize(
    "plain", [b"", b" ", b'{"a":1} x', b'{"a":1}{}', b"[1,", b"\xff\xfe\xfd", b"{'a':1}"]
)
def test_loads_refuses_anything_else_as_an_integrity_failure(plain: bytes) -> None:
    with pytest.raises(IntegrityError):
        record_doc._loads(plain)
