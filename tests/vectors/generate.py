"""Deterministic generator of the envelope format v1 test vectors.

Writes, next to this file:

* ``field_envelope_v1.json``  field envelopes (kind 1)
* ``content_stream_v1.json``  chunked content streams (kind 2)
* ``wrapped_key_v1.json``     wrapped keys (kind 3)

Every key, key id, nonce and salt is a fixed constant below, injected into the pure core
(:mod:`mizaic_processor._core.envelope`), so the output is byte-for-byte reproducible:
no randomness, no clock, no environment. Before writing anything the generator checks its
own output: every valid case must decrypt to its plaintext and every invalid case must
raise :class:`~mizaic_processor.errors.IntegrityError`.

The committed JSON files are the specification of format v1.
``tests/unit/test_envelope_vectors.py`` checks the implementation against them and checks
that this generator still reproduces them exactly, so a change to the format cannot go
unnoticed. Regenerate only for a deliberate format change (which also needs a new format
version byte), from the repository root, with the project's virtualenv active::

    python tests/vectors/generate.py          # rewrite the three JSON files
    python tests/vectors/generate.py --check  # exit status 1 if a file is out of date

All binary values in the files are lowercase hex; identifiers are JSON strings (encoded as
UTF-8 where the format needs bytes). The fixed nonces and salts are for vectors only: real
callers pass ``os.urandom`` output, and reusing a nonce or salt under one key breaks
AES-GCM.
"""

from __future__ import annotations

import argparse
import json
import struct
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from mizaic_processor._core import envelope as env
from mizaic_processor.errors import IntegrityError

HERE = Path(__file__).resolve().parent

FIELD_FILE = "field_envelope_v1.json"
CONTENT_FILE = "content_stream_v1.json"
WRAPPED_FILE = "wrapped_key_v1.json"

ERROR = "IntegrityError"

# -- fixed inputs --------------------------------------------------------------------------

SUBJECT_KEY = bytes(range(0x00, 0x20))
OTHER_SUBJECT_KEY = bytes(range(0x20, 0x40))
WRAPPING_KEY = bytes(range(0x40, 0x60))
OTHER_WRAPPING_KEY = bytes(range(0x60, 0x80))
DATA_KEY = bytes(range(0x80, 0xA0))
SKID = bytes(range(0xA0, 0xB0))
OTHER_SKID = bytes(range(0xB0, 0xC0))
SALT = bytes(range(0xD0, 0xF0))
OTHER_SALT = bytes(range(0xE0, 0x100))

CONTROLLER = "controller-0001"
OTHER_CONTROLLER = "controller-0002"
RECORD = "record-0001"
OTHER_RECORD = "record-0002"


def _nonce(n: int) -> bytes:
    """The n-th fixed 12-byte nonce: c0 c1 .. ca, then n."""
    return bytes(range(0xC0, 0xCB)) + bytes([n])


def _pattern(length: int) -> bytes:
    """Fixed plaintext of any length; a shorter one is a prefix of a longer one."""
    return bytes((7 * i + 3) % 256 for i in range(length))


UNICODE_JSON = json.dumps(
    {
        "allergy": "p\u00e9nicilline",
        "note": "\u00c4rztin: \u982d\u75db \U0001fa7a",
        "dob": "1970-01-01",
    },
    ensure_ascii=False,
    sort_keys=True,
).encode("utf-8")
ONE_KIB = bytes(i % 256 for i in range(1024))

# -- header layouts (offsets are part of the format) ----------------------------------------

FIELD_OFFSETS = {
    "magic": 0,
    "version": 2,
    "kind": 3,
    "suite": 4,
    "skid": 5,
    "key_version": 21,
    "commitment": 25,
    "nonce": 57,
}
FIELD_HEADER_BYTES = 69

CONTENT_OFFSETS = {
    "magic": 0,
    "version": 2,
    "kind": 3,
    "suite": 4,
    "skid": 5,
    "key_version": 21,
    "commitment": 25,
    "salt": 57,
    "chunk_size": 89,
}
CONTENT_HEADER_BYTES = 93

WRAPPED_OFFSETS = {
    "magic": 0,
    "version": 2,
    "kind": 3,
    "suite": 4,
    "wrapping_key_version": 5,
    "nonce": 9,
}
WRAPPED_HEADER_BYTES = 21

TAG_BYTES = 16


def _check_layout() -> None:
    if env.FIELD_HEADER_BYTES != FIELD_HEADER_BYTES:
        raise AssertionError("field header size changed: this is a new format version")
    if env.CONTENT_HEADER_BYTES != CONTENT_HEADER_BYTES:
        raise AssertionError("content header size changed: this is a new format version")


# -- byte surgery --------------------------------------------------------------------------


def _flip(data: bytes, index: int, mask: int = 0x01) -> bytes:
    out = bytearray(data)
    out[index] ^= mask
    return bytes(out)


def _put(data: bytes, index: int, value: bytes) -> bytes:
    return data[:index] + value + data[index + len(value) :]


def _hex(value: bytes) -> str:
    return value.hex()


def _keys(
    subject_key: bytes, skid: bytes, key_version: int, controller_id: str, record_id: str
) -> env.RecordKeys:
    return env.derive_record_keys(
        subject_key,
        skid=skid,
        key_version=key_version,
        controller_id=controller_id,
        record_id=record_id,
    )


def _raises_integrity_error(action: Callable[[], object]) -> bool:
    try:
        action()
    except IntegrityError:
        return True
    return False


def _parses(parser: Callable[[bytes], object], data: bytes) -> bool:
    return not _raises_integrity_error(lambda: parser(data))


# -- field envelopes -----------------------------------------------------------------------

_FIELD_VALID: list[dict[str, Any]] = [
    {
        "id": "empty_plaintext",
        "description": "An empty value still carries a full header and a 16-byte tag.",
        "key_version": 1,
        "controller_id": CONTROLLER,
        "record_id": RECORD,
        "field_path": "name.given",
        "nonce": _nonce(1),
        "plaintext": b"",
    },
    {
        "id": "short_ascii_key_version_zero",
        "description": "A short ASCII value under key version 0.",
        "key_version": 0,
        "controller_id": CONTROLLER,
        "record_id": RECORD,
        "field_path": "birth_date",
        "nonce": _nonce(2),
        "plaintext": b"1970-01-01",
    },
    {
        "id": "unicode_json",
        "description": "A UTF-8 JSON value, with non-ASCII controller, record and field ids.",
        "key_version": 3,
        "controller_id": "praxis-m\u00fcller",
        "record_id": "patient-\u00e9l\u00e8ve-42",
        "field_path": "clinical.anamn\u00e8se[0]",
        "nonce": _nonce(3),
        "plaintext": UNICODE_JSON,
    },
    {
        "id": "one_kib_max_key_version",
        "description": "1 KiB covering every byte value, under the largest key version.",
        "key_version": 0xFFFFFFFF,
        "controller_id": CONTROLLER,
        "record_id": OTHER_RECORD,
        "field_path": "attachments.scan",
        "nonce": _nonce(4),
        "plaintext": ONE_KIB,
    },
]


def _field_valid() -> list[dict[str, Any]]:
    cases = []
    for spec in _FIELD_VALID:
        keys = _keys(
            SUBJECT_KEY, SKID, spec["key_version"], spec["controller_id"], spec["record_id"]
        )
        envelope = env.encrypt_field(
            keys,
            spec["plaintext"],
            controller_id=spec["controller_id"],
            record_id=spec["record_id"],
            field_path=spec["field_path"],
            nonce=spec["nonce"],
        )
        cases.append(
            {
                "id": spec["id"],
                "description": spec["description"],
                "subject_key": _hex(SUBJECT_KEY),
                "skid": _hex(SKID),
                "key_version": spec["key_version"],
                "controller_id": spec["controller_id"],
                "record_id": spec["record_id"],
                "field_path": spec["field_path"],
                "nonce": _hex(spec["nonce"]),
                "plaintext": _hex(spec["plaintext"]),
                "envelope": _hex(envelope),
            }
        )
    return cases


def _field_invalid(valid: list[dict[str, Any]], foreign: dict[str, bytes]) -> list[dict[str, Any]]:
    base = next(case for case in valid if case["id"] == "unicode_json")
    empty = next(case for case in valid if case["id"] == "empty_plaintext")
    envelope = bytes.fromhex(base["envelope"])
    header = envelope[:FIELD_HEADER_BYTES]
    cases: list[dict[str, Any]] = []

    def add(case_id: str, description: str, data: bytes, **overrides: Any) -> None:
        source = overrides.pop("source", base)
        case = {
            "id": case_id,
            "description": description,
            "subject_key": source["subject_key"],
            "skid": source["skid"],
            "key_version": source["key_version"],
            "controller_id": source["controller_id"],
            "record_id": source["record_id"],
            "field_path": source["field_path"],
            "envelope": _hex(data),
        }
        case.update(overrides)
        cases.append(case)

    keys_for_base = {"controller_id": base["controller_id"], "record_id": base["record_id"]}

    # moved
    add(
        "wrong_controller",
        "Moved to another controller; record keys derived for that controller.",
        envelope,
        controller_id=OTHER_CONTROLLER,
    )
    add(
        "wrong_controller_binding_only",
        "Moved to another controller; record keys of the original record (tests the AAD).",
        envelope,
        controller_id=OTHER_CONTROLLER,
        derive_keys_for=keys_for_base,
    )
    add(
        "wrong_record",
        "Moved to another record; record keys derived for that record.",
        envelope,
        record_id=OTHER_RECORD,
    )
    add(
        "wrong_record_binding_only",
        "Moved to another record; record keys of the original record (tests the AAD).",
        envelope,
        record_id=OTHER_RECORD,
        derive_keys_for=keys_for_base,
    )
    add(
        "wrong_field",
        "Moved to another field of the same record.",
        envelope,
        field_path="clinical.anamn\u00e8se[1]",
    )
    add(
        "ids_shifted_across_boundary",
        "Controller and record ids whose concatenation is unchanged (canonical encoding).",
        envelope,
        controller_id=base["controller_id"] + base["record_id"][:1],
        record_id=base["record_id"][1:],
        derive_keys_for=keys_for_base,
    )
    # altered
    add("flipped_tag_byte", "Last byte of the tag flipped.", _flip(envelope, len(envelope) - 1))
    add(
        "flipped_first_tag_byte",
        "First byte of the tag flipped.",
        _flip(envelope, len(envelope) - TAG_BYTES),
    )
    add(
        "flipped_ciphertext_byte",
        "First ciphertext byte flipped.",
        _flip(envelope, FIELD_HEADER_BYTES),
    )
    for region, offset in FIELD_OFFSETS.items():
        add(
            f"flipped_header_{region}",
            f"First byte of the header's {region} flipped.",
            _flip(envelope, offset),
        )
    add(
        "flipped_tag_of_empty_plaintext",
        "Empty plaintext, last tag byte flipped.",
        _flip(bytes.fromhex(empty["envelope"]), FIELD_HEADER_BYTES + TAG_BYTES - 1),
        source=empty,
    )
    # truncated and extended
    add("truncated_by_one_byte", "Last byte removed.", envelope[:-1])
    add("truncated_to_header_only", "Only the 69-byte header.", header)
    add(
        "truncated_to_header_and_partial_tag",
        "Header and 15 bytes.",
        envelope[: FIELD_HEADER_BYTES + TAG_BYTES - 1],
    )
    add("truncated_inside_header", "Header minus its last byte.", header[:-1])
    add("truncated_to_magic", "Just the magic.", envelope[:2])
    add("empty", "No bytes at all.", b"")
    add("extended_by_one_byte", "A zero byte appended.", envelope + b"\x00")
    add("extended_by_a_tag", "16 zero bytes appended.", envelope + bytes(TAG_BYTES))
    # unknown format
    add("unknown_version_2", "Version byte set to 2.", _put(envelope, 2, b"\x02"))
    add("unknown_version_255", "Version byte set to 255.", _put(envelope, 2, b"\xff"))
    add("unknown_suite_2", "Suite byte set to 2.", _put(envelope, 4, b"\x02"))
    add("unknown_suite_0", "Suite byte set to 0.", _put(envelope, 4, b"\x00"))
    add("kind_content", "Kind byte set to 2 (content stream).", _put(envelope, 3, b"\x02"))
    add("kind_wrapped_key", "Kind byte set to 3 (wrapped key).", _put(envelope, 3, b"\x03"))
    add(
        "content_stream_given_as_field",
        "A valid content stream of the same record.",
        foreign["content"],
    )
    add("wrapped_key_given_as_field", "A valid wrapped key.", foreign["wrapped"])
    # wrong keys
    add(
        "unknown_key_id",
        "Decrypted with keys whose skid differs from the header's.",
        envelope,
        skid=_hex(OTHER_SKID),
    )
    add(
        "wrong_key_version",
        "Decrypted with keys of another key version.",
        envelope,
        key_version=base["key_version"] + 1,
    )
    add(
        "wrong_subject_key",
        "Decrypted with another subject key (same skid and version).",
        envelope,
        subject_key=_hex(OTHER_SUBJECT_KEY),
    )
    other_keys = _keys(
        OTHER_SUBJECT_KEY, SKID, base["key_version"], base["controller_id"], base["record_id"]
    )
    add(
        "commitment_rewritten_for_wrong_subject_key",
        "Header commitment replaced by the other key's; the AEAD must still fail.",
        _put(envelope, FIELD_OFFSETS["commitment"], other_keys.commitment),
        subject_key=_hex(OTHER_SUBJECT_KEY),
    )
    add(
        "skid_rewritten_for_unknown_key_id",
        "Header skid replaced by the other skid and decrypted with keys for that skid.",
        _put(envelope, FIELD_OFFSETS["skid"], OTHER_SKID),
        skid=_hex(OTHER_SKID),
    )
    for case in cases:
        case["header_parses"] = _parses(env.parse_field_header, bytes.fromhex(case["envelope"]))
        case["error"] = ERROR
    return cases


def _decrypt_field_case(case: dict[str, Any]) -> bytes:
    derive = case.get("derive_keys_for", case)
    keys = _keys(
        bytes.fromhex(case["subject_key"]),
        bytes.fromhex(case["skid"]),
        case["key_version"],
        derive["controller_id"],
        derive["record_id"],
    )
    return env.decrypt_field(
        keys,
        bytes.fromhex(case["envelope"]),
        controller_id=case["controller_id"],
        record_id=case["record_id"],
        field_path=case["field_path"],
    )


def field_envelope_vectors() -> dict[str, Any]:
    """The field envelope (kind 1) vector document."""
    _check_layout()
    valid = _field_valid()
    foreign = {
        "content": bytes.fromhex(
            next(c for c in _content_valid() if c["id"] == "cs16_size_17")["envelope"]
        ),
        "wrapped": bytes.fromhex(_wrapped_valid()[0]["wrapped"]),
    }
    invalid = _field_invalid(valid, foreign)
    for case in valid:
        if _decrypt_field_case(case) != bytes.fromhex(case["plaintext"]):
            raise AssertionError(f"field vector {case['id']} does not round-trip")
    for case in invalid:
        if not _raises_integrity_error(lambda case=case: _decrypt_field_case(case)):
            raise AssertionError(f"invalid field vector {case['id']} decrypts")
    return {
        "format": "mizaic envelope v1, field envelope (kind 1)",
        "layout": (
            "magic(2) version(1) kind(1) suite(1) skid(16) key_version(4) commitment(32) "
            "nonce(12) ciphertext||tag(16)"
        ),
        "notes": [
            "Binary values are lowercase hex; ids are strings, UTF-8 encoded by the format.",
            "Record keys come from derive_record_keys(subject_key, skid, key_version, "
            "controller_id, record_id).",
            "valid: encrypt_field(keys, plaintext, controller_id, record_id, field_path, "
            "nonce) == envelope, and decrypt_field gives back plaintext.",
            "invalid: decrypt_field(keys, envelope, controller_id, record_id, field_path) "
            "raises IntegrityError. If derive_keys_for is present, the record keys are "
            "derived for that controller_id and record_id instead (the binding still uses "
            "the case's ids). header_parses says whether parse_field_header(envelope) "
            "returns (true) or raises IntegrityError (false).",
            "Regenerate with: python tests/vectors/generate.py",
        ],
        "header_bytes": FIELD_HEADER_BYTES,
        "header_offsets": FIELD_OFFSETS,
        "tag_bytes": TAG_BYTES,
        "valid": valid,
        "invalid": invalid,
    }


# -- content streams -----------------------------------------------------------------------


def _content_specs() -> list[dict[str, Any]]:
    specs = []
    for chunk_size in (16, 64):
        for size in (
            0,
            1,
            chunk_size - 1,
            chunk_size,
            chunk_size + 1,
            2 * chunk_size,
            3 * chunk_size,
        ):
            specs.append(
                {
                    "id": f"cs{chunk_size}_size_{size}",
                    "description": f"{size} bytes in chunks of {chunk_size}.",
                    "key_version": 1,
                    "controller_id": CONTROLLER,
                    "record_id": RECORD,
                    "salt": SALT,
                    "chunk_size": chunk_size,
                    "plaintext": _pattern(size),
                }
            )
    specs.append(
        {
            "id": "cs17_size_40_other_salt",
            "description": "An odd chunk size, another salt, key version 9, unicode ids.",
            "key_version": 9,
            "controller_id": "praxis-m\u00fcller",
            "record_id": "patient-\u00e9l\u00e8ve-42",
            "salt": OTHER_SALT,
            "chunk_size": 17,
            "plaintext": _pattern(40),
        }
    )
    return specs


def _encrypt_content(spec: dict[str, Any]) -> bytes:
    keys = _keys(SUBJECT_KEY, SKID, spec["key_version"], spec["controller_id"], spec["record_id"])
    return b"".join(
        env.encrypt_content(
            keys,
            [spec["plaintext"]],
            controller_id=spec["controller_id"],
            record_id=spec["record_id"],
            salt=spec["salt"],
            chunk_size=spec["chunk_size"],
        )
    )


def _content_valid() -> list[dict[str, Any]]:
    return [
        {
            "id": spec["id"],
            "description": spec["description"],
            "subject_key": _hex(SUBJECT_KEY),
            "skid": _hex(SKID),
            "key_version": spec["key_version"],
            "controller_id": spec["controller_id"],
            "record_id": spec["record_id"],
            "salt": _hex(spec["salt"]),
            "chunk_size": spec["chunk_size"],
            "plaintext": _hex(spec["plaintext"]),
            "envelope": _hex(_encrypt_content(spec)),
        }
        for spec in _content_specs()
    ]


def _split_stream(stream: bytes, chunk_size: int) -> tuple[bytes, list[bytes]]:
    full = chunk_size + TAG_BYTES
    body = stream[CONTENT_HEADER_BYTES:]
    return stream[:CONTENT_HEADER_BYTES], [body[i : i + full] for i in range(0, len(body), full)]


def _content_invalid(valid: list[dict[str, Any]], foreign_field: bytes) -> list[dict[str, Any]]:
    by_id = {case["id"]: case for case in valid}
    base = by_id["cs16_size_48"]  # three full chunks, the third flagged final
    stream = bytes.fromhex(base["envelope"])
    header, chunks = _split_stream(stream, 16)
    if len(chunks) != 3:
        raise AssertionError("expected three chunks")
    c0, c1, c2 = chunks
    shorter = bytes.fromhex(by_id["cs16_size_32"]["envelope"])  # same header, c1 final
    ragged = bytes.fromhex(by_id["cs16_size_17"]["envelope"])  # 16 bytes + 1 byte final
    empty = bytes.fromhex(by_id["cs16_size_0"]["envelope"])
    if shorter[:CONTENT_HEADER_BYTES] != header:
        raise AssertionError("streams of one record and salt must share their header")
    cases: list[dict[str, Any]] = []

    def add(case_id: str, description: str, data: bytes, **overrides: Any) -> None:
        case = {
            "id": case_id,
            "description": description,
            "subject_key": base["subject_key"],
            "skid": base["skid"],
            "key_version": base["key_version"],
            "controller_id": base["controller_id"],
            "record_id": base["record_id"],
            "envelope": _hex(data),
        }
        case.update(overrides)
        cases.append(case)

    keys_for_base = {"controller_id": base["controller_id"], "record_id": base["record_id"]}
    # reordered, dropped, duplicated
    add("chunks_swapped", "Chunks 0 and 1 swapped.", header + c1 + c0 + c2)
    add(
        "final_chunk_moved_forward",
        "Chunks 1 and 2 swapped (final flag at index 1).",
        header + c0 + c2 + c1,
    )
    add("middle_chunk_dropped", "Chunk 1 dropped.", header + c0 + c2)
    add("first_chunk_dropped", "Chunk 0 dropped.", header + c1 + c2)
    add("chunk_duplicated", "Chunk 0 repeated.", header + c0 + c0 + c1 + c2)
    # truncated
    add(
        "truncated_at_chunk_boundary",
        "Final chunk dropped: chunk 1 is not flagged final.",
        header + c0 + c1,
    )
    add("truncated_to_first_chunk", "Only chunk 0 (not flagged final) left.", header + c0)
    add("truncated_mid_final_chunk", "Last 5 bytes of the final chunk removed.", stream[:-5])
    add("truncated_by_one_byte", "Last byte removed.", stream[:-1])
    add("truncated_mid_middle_chunk", "Cut 10 bytes into chunk 1.", header + c0 + c1[:10])
    add(
        "truncated_final_chunk_to_partial_tag",
        "Final chunk of 15 bytes (less than a tag).",
        header + c0 + c1 + c2[:15],
    )
    add("truncated_to_header_only", "The 93-byte header, no chunk.", header)
    add("truncated_inside_header", "Header minus its last byte.", header[:-1])
    add("empty", "No bytes at all.", b"")
    # extended / final flag forged
    add("extra_byte_appended", "A zero byte appended after the final chunk.", stream + b"\x00")
    add(
        "extra_tag_appended",
        "16 zero bytes appended after the final chunk.",
        stream + bytes(TAG_BYTES),
    )
    add("final_chunk_repeated", "The final chunk appended again.", stream + c2)
    add(
        "final_chunk_followed_by_chunk_of_longer_stream",
        "A 2-chunk stream (chunk 1 final) followed by chunk 2 of a 3-chunk stream with the "
        "same header: the chunk flagged final is not the last.",
        shorter + c2,
    )
    add(
        "ragged_final_chunk_extended",
        "A 17-byte stream (final chunk of 1 byte) with a byte appended.",
        ragged + b"\x00",
    )
    # moved
    add(
        "moved_to_another_record",
        "Record keys derived for another record.",
        stream,
        record_id=OTHER_RECORD,
    )
    add(
        "moved_to_another_record_binding_only",
        "Another record in the binding, keys of the original record (tests the AAD).",
        stream,
        record_id=OTHER_RECORD,
        derive_keys_for=keys_for_base,
    )
    add(
        "moved_to_another_controller",
        "Record keys derived for another controller.",
        stream,
        controller_id=OTHER_CONTROLLER,
    )
    add(
        "moved_to_another_controller_binding_only",
        "Another controller in the binding, keys of the original record (tests the AAD).",
        stream,
        controller_id=OTHER_CONTROLLER,
        derive_keys_for=keys_for_base,
    )
    # flipped
    for region, offset in CONTENT_OFFSETS.items():
        add(
            f"flipped_header_{region}",
            f"First byte of the header's {region} flipped.",
            _flip(stream, offset),
        )
    add(
        "flipped_header_chunk_size_low_byte",
        "Last byte of chunk_size flipped (16 -> 17, still in range).",
        _flip(stream, CONTENT_OFFSETS["chunk_size"] + 3),
    )
    add(
        "flipped_first_chunk_ciphertext",
        "First ciphertext byte of chunk 0 flipped.",
        _flip(stream, CONTENT_HEADER_BYTES),
    )
    add(
        "flipped_first_chunk_tag",
        "Last tag byte of chunk 0 flipped.",
        _flip(stream, CONTENT_HEADER_BYTES + len(c0) - 1),
    )
    add(
        "flipped_middle_chunk_ciphertext",
        "First ciphertext byte of chunk 1 flipped.",
        _flip(stream, CONTENT_HEADER_BYTES + len(c0)),
    )
    add(
        "flipped_final_chunk_ciphertext",
        "First ciphertext byte of the final chunk flipped.",
        _flip(stream, len(stream) - len(c2)),
    )
    add(
        "flipped_final_chunk_tag",
        "Last tag byte of the final chunk flipped.",
        _flip(stream, len(stream) - 1),
    )
    add(
        "flipped_tag_of_empty_stream",
        "Empty plaintext, the lone tag's last byte flipped.",
        _flip(empty, len(empty) - 1),
    )
    # unknown format
    add("unknown_version_2", "Version byte set to 2.", _put(stream, 2, b"\x02"))
    add("unknown_suite_2", "Suite byte set to 2.", _put(stream, 4, b"\x02"))
    add("kind_field", "Kind byte set to 1 (field envelope).", _put(stream, 3, b"\x01"))
    add(
        "chunk_size_zero",
        "chunk_size 0 in the header.",
        _put(stream, CONTENT_OFFSETS["chunk_size"], struct.pack(">I", 0)),
    )
    add(
        "chunk_size_below_minimum",
        "chunk_size 15 in the header (minimum is 16).",
        _put(stream, CONTENT_OFFSETS["chunk_size"], struct.pack(">I", 15)),
    )
    add(
        "chunk_size_above_maximum",
        "chunk_size 16 MiB + 1 in the header.",
        _put(stream, CONTENT_OFFSETS["chunk_size"], struct.pack(">I", 16 * 1024 * 1024 + 1)),
    )
    add(
        "chunk_size_changed_in_range",
        "chunk_size 32 in the header (authenticated).",
        _put(stream, CONTENT_OFFSETS["chunk_size"], struct.pack(">I", 32)),
    )
    add("field_envelope_given_as_content", "A valid field envelope.", foreign_field)
    # wrong keys
    add(
        "unknown_key_id",
        "Keys whose skid differs from the header's.",
        stream,
        skid=_hex(OTHER_SKID),
    )
    add(
        "wrong_key_version",
        "Keys of another key version.",
        stream,
        key_version=base["key_version"] + 1,
    )
    add(
        "wrong_subject_key",
        "Another subject key (same skid and version).",
        stream,
        subject_key=_hex(OTHER_SUBJECT_KEY),
    )
    other_keys = _keys(
        OTHER_SUBJECT_KEY, SKID, base["key_version"], base["controller_id"], base["record_id"]
    )
    add(
        "commitment_rewritten_for_wrong_subject_key",
        "Header commitment replaced by the other key's; the chunks must still fail.",
        _put(stream, CONTENT_OFFSETS["commitment"], other_keys.commitment),
        subject_key=_hex(OTHER_SUBJECT_KEY),
    )
    for case in cases:
        case["header_parses"] = _parses(env.parse_content_header, bytes.fromhex(case["envelope"]))
        case["error"] = ERROR
    return cases


def _decrypt_content_case(case: dict[str, Any]) -> bytes:
    derive = case.get("derive_keys_for", case)
    keys = _keys(
        bytes.fromhex(case["subject_key"]),
        bytes.fromhex(case["skid"]),
        case["key_version"],
        derive["controller_id"],
        derive["record_id"],
    )
    return b"".join(
        env.decrypt_content(
            keys,
            [bytes.fromhex(case["envelope"])],
            controller_id=case["controller_id"],
            record_id=case["record_id"],
        )
    )


def content_stream_vectors() -> dict[str, Any]:
    """The content stream (kind 2) vector document."""
    _check_layout()
    valid = _content_valid()
    field_case = _field_valid()[1]
    invalid = _content_invalid(valid, bytes.fromhex(field_case["envelope"]))
    for case in valid:
        if _decrypt_content_case(case) != bytes.fromhex(case["plaintext"]):
            raise AssertionError(f"content vector {case['id']} does not round-trip")
    for case in invalid:
        if not _raises_integrity_error(lambda case=case: _decrypt_content_case(case)):
            raise AssertionError(f"invalid content vector {case['id']} decrypts")
    return {
        "format": "mizaic envelope v1, content stream (kind 2)",
        "layout": (
            "magic(2) version(1) kind(1) suite(1) skid(16) key_version(4) commitment(32) "
            "salt(32) chunk_size(4), then chunks of chunk_size plaintext bytes, each "
            "ciphertext||tag(16); the last chunk (0..chunk_size bytes) is flagged final"
        ),
        "notes": [
            "Binary values are lowercase hex; ids are strings, UTF-8 encoded by the format.",
            "Record keys come from derive_record_keys(subject_key, skid, key_version, "
            "controller_id, record_id).",
            "valid: encrypt_content(keys, [plaintext], controller_id, record_id, salt, "
            "chunk_size) joined == envelope, len(envelope) == "
            "encrypted_content_length(len(plaintext), chunk_size), and decrypt_content "
            "gives back plaintext however the envelope is split into pieces.",
            "invalid: decrypt_content(keys, pieces, controller_id, record_id) raises "
            "IntegrityError however the envelope is split into pieces. If derive_keys_for "
            "is present, the record keys are derived for that controller_id and record_id "
            "instead. header_parses says whether parse_content_header(envelope) returns "
            "(true) or raises IntegrityError (false).",
            "Regenerate with: python tests/vectors/generate.py",
        ],
        "header_bytes": CONTENT_HEADER_BYTES,
        "header_offsets": CONTENT_OFFSETS,
        "tag_bytes": TAG_BYTES,
        "valid": valid,
        "invalid": invalid,
    }


# -- wrapped keys --------------------------------------------------------------------------

SUBJECT_KEY_CONTEXT = env.canonical("mizaic/v1/subject-key", CONTROLLER, SKID)
BLIND_INDEX_CONTEXT = env.canonical("mizaic/v1/blind-index-key", CONTROLLER)

_WRAPPED_VALID: list[dict[str, Any]] = [
    {
        "id": "subject_key",
        "description": "A subject key under controller key version 1.",
        "wrapping_key_version": 1,
        "context": SUBJECT_KEY_CONTEXT,
        "nonce": _nonce(0x21),
        "key": SUBJECT_KEY,
    },
    {
        "id": "blind_index_key",
        "description": "A blind-index key under controller key version 7.",
        "wrapping_key_version": 7,
        "context": BLIND_INDEX_CONTEXT,
        "nonce": _nonce(0x22),
        "key": DATA_KEY,
    },
    {
        "id": "empty_context_max_version",
        "description": "An empty context under the largest wrapping key version.",
        "wrapping_key_version": 0xFFFFFFFF,
        "context": b"",
        "nonce": _nonce(0x23),
        "key": DATA_KEY,
    },
]


def _wrapped_valid() -> list[dict[str, Any]]:
    return [
        {
            "id": spec["id"],
            "description": spec["description"],
            "wrapping_key": _hex(WRAPPING_KEY),
            "wrapping_key_version": spec["wrapping_key_version"],
            "context": _hex(spec["context"]),
            "nonce": _hex(spec["nonce"]),
            "key": _hex(spec["key"]),
            "wrapped": _hex(
                env.wrap_key(
                    WRAPPING_KEY,
                    spec["key"],
                    wrapping_key_version=spec["wrapping_key_version"],
                    context=spec["context"],
                    nonce=spec["nonce"],
                )
            ),
        }
        for spec in _WRAPPED_VALID
    ]


def _wrapped_invalid(valid: list[dict[str, Any]]) -> list[dict[str, Any]]:
    base = valid[0]
    wrapped = bytes.fromhex(base["wrapped"])
    context = bytes.fromhex(base["context"])
    cases: list[dict[str, Any]] = []

    def add(case_id: str, description: str, data: bytes, **overrides: Any) -> None:
        case = {
            "id": case_id,
            "description": description,
            "wrapping_key": base["wrapping_key"],
            "context": base["context"],
            "wrapped": _hex(data),
        }
        case.update(overrides)
        cases.append(case)

    add(
        "wrong_context",
        "The subject key context of another controller.",
        wrapped,
        context=_hex(env.canonical("mizaic/v1/subject-key", OTHER_CONTROLLER, SKID)),
    )
    add(
        "wrong_purpose_context",
        "The blind-index key context of the same controller.",
        wrapped,
        context=_hex(BLIND_INDEX_CONTEXT),
    )
    add(
        "context_truncated", "The context minus its last byte.", wrapped, context=_hex(context[:-1])
    )
    add(
        "context_extended",
        "The context plus a zero byte.",
        wrapped,
        context=_hex(context + b"\x00"),
    )
    add("context_empty", "An empty context.", wrapped, context="")
    for region, offset in WRAPPED_OFFSETS.items():
        add(
            f"flipped_header_{region}",
            f"First byte of the header's {region} flipped.",
            _flip(wrapped, offset),
        )
    add(
        "flipped_ciphertext_byte",
        "First ciphertext byte flipped.",
        _flip(wrapped, WRAPPED_HEADER_BYTES),
    )
    add("flipped_tag_byte", "Last tag byte flipped.", _flip(wrapped, len(wrapped) - 1))
    add("truncated_by_one_byte", "Last byte removed.", wrapped[:-1])
    add("truncated_to_header_only", "Only the 21-byte header.", wrapped[:WRAPPED_HEADER_BYTES])
    add(
        "truncated_to_header_and_partial_tag",
        "Header and 15 bytes.",
        wrapped[: WRAPPED_HEADER_BYTES + TAG_BYTES - 1],
    )
    add("empty", "No bytes at all.", b"")
    add("extended_by_one_byte", "A zero byte appended.", wrapped + b"\x00")
    add("unknown_version_2", "Version byte set to 2.", _put(wrapped, 2, b"\x02"))
    add("unknown_suite_2", "Suite byte set to 2.", _put(wrapped, 4, b"\x02"))
    add("kind_field", "Kind byte set to 1 (field envelope).", _put(wrapped, 3, b"\x01"))
    add(
        "wrapping_key_version_rewritten",
        "Wrapping key version 1 rewritten to 2.",
        _put(wrapped, WRAPPED_OFFSETS["wrapping_key_version"], struct.pack(">I", 2)),
    )
    add(
        "wrong_wrapping_key",
        "Unwrapped with another controller key.",
        wrapped,
        wrapping_key=_hex(OTHER_WRAPPING_KEY),
    )
    add(
        "wrapping_key_too_short",
        "Unwrapped with a 31-byte key.",
        wrapped,
        wrapping_key=_hex(WRAPPING_KEY[:-1]),
    )
    add(
        "wrapping_key_aes128_prefix",
        "Unwrapped with the first 16 bytes of the key.",
        wrapped,
        wrapping_key=_hex(WRAPPING_KEY[:16]),
    )
    for case in cases:
        case["header_parses"] = _parses(env.wrapped_key_version, bytes.fromhex(case["wrapped"]))
        case["error"] = ERROR
    return cases


def _unwrap_case(case: dict[str, Any]) -> bytes:
    return env.unwrap_key(
        bytes.fromhex(case["wrapping_key"]),
        bytes.fromhex(case["wrapped"]),
        context=bytes.fromhex(case["context"]),
    )


def wrapped_key_vectors() -> dict[str, Any]:
    """The wrapped key (kind 3) vector document."""
    valid = _wrapped_valid()
    invalid = _wrapped_invalid(valid)
    for case in valid:
        if _unwrap_case(case) != bytes.fromhex(case["key"]):
            raise AssertionError(f"wrapped key vector {case['id']} does not round-trip")
    for case in invalid:
        if not _raises_integrity_error(lambda case=case: _unwrap_case(case)):
            raise AssertionError(f"invalid wrapped key vector {case['id']} unwraps")
    return {
        "format": "mizaic envelope v1, wrapped key (kind 3)",
        "layout": (
            "magic(2) version(1) kind(1) suite(1) wrapping_key_version(4) nonce(12) "
            "ciphertext||tag(16); AAD = header || context"
        ),
        "notes": [
            "Binary values, including the context, are lowercase hex.",
            "valid: wrap_key(wrapping_key, key, wrapping_key_version, context, nonce) == "
            "wrapped, unwrap_key gives back key, and wrapped_key_version(wrapped) == "
            "wrapping_key_version.",
            "invalid: unwrap_key(wrapping_key, wrapped, context) raises IntegrityError. "
            "header_parses says whether wrapped_key_version(wrapped) returns (true) or "
            "raises IntegrityError (false).",
            "Regenerate with: python tests/vectors/generate.py",
        ],
        "header_bytes": WRAPPED_HEADER_BYTES,
        "header_offsets": WRAPPED_OFFSETS,
        "tag_bytes": TAG_BYTES,
        "valid": valid,
        "invalid": invalid,
    }


# -- output --------------------------------------------------------------------------------


def render(document: dict[str, Any]) -> str:
    """The exact text of a vector file."""
    return json.dumps(document, indent=2, ensure_ascii=False) + "\n"


def render_all() -> dict[str, str]:
    """File name -> exact text, for every vector file."""
    return {
        FIELD_FILE: render(field_envelope_vectors()),
        CONTENT_FILE: render(content_stream_vectors()),
        WRAPPED_FILE: render(wrapped_key_vectors()),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Generate the envelope v1 test vectors.")
    parser.add_argument(
        "--check", action="store_true", help="only report whether the files are up to date"
    )
    args = parser.parse_args(argv)
    stale = []
    for name, text in render_all().items():
        path = HERE / name
        current = path.read_text(encoding="utf-8") if path.exists() else None
        if current == text:
            continue
        stale.append(name)
        if not args.check:
            path.write_text(text, encoding="utf-8", newline="\n")
    if args.check:
        for name in stale:
            print(f"out of date: {name}", file=sys.stderr)
        return 1 if stale else 0
    for name in stale:
        print(f"wrote {name}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
