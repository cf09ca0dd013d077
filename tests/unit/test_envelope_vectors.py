"""The envelope format v1 against its committed test vectors (``tests/vectors/*.json``).

Valid cases must encrypt byte-exactly to the committed envelope (with the fixed nonce or
salt) and decrypt back; invalid cases must raise
:class:`~mizaic_processor.errors.IntegrityError`. The generator must still reproduce the
committed files, so a format change cannot go unnoticed; and an independent computation
straight from the documented layout (HKDF-SHA256 and AES-256-GCM from ``cryptography``)
must give the same bytes, so the vectors are not merely the implementation agreeing with
itself.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import struct
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from mizaic_processor._core.envelope import (
    ContentDecryptor,
    decrypt_content,
    decrypt_field,
    derive_record_keys,
    encrypt_content,
    encrypt_field,
    encrypted_content_length,
    parse_content_header,
    parse_field_header,
    unwrap_key,
    wrap_key,
    wrapped_key_version,
)
from mizaic_processor.errors import IntegrityError

VECTORS = Path(__file__).resolve().parents[1] / "vectors"
VECTOR_FILES = ("field_envelope_v1.json", "content_stream_v1.json", "wrapped_key_v1.json")


def _load(name: str) -> dict[str, Any]:
    document: dict[str, Any] = json.loads((VECTORS / name).read_text(encoding="utf-8"))
    return document


FIELD = _load("field_envelope_v1.json")
CONTENT = _load("content_stream_v1.json")
WRAPPED = _load("wrapped_key_v1.json")


def _ids(case: dict[str, Any]) -> str:
    return str(case["id"])


def _b(value: str) -> bytes:
    return bytes.fromhex(value)


def _record_keys(case: dict[str, Any]) -> Any:
    derive = case.get("derive_keys_for", case)
    return derive_record_keys(
        _b(case["subject_key"]),
        skid=_b(case["skid"]),
        key_version=case["key_version"],
        controller_id=derive["controller_id"],
        record_id=derive["record_id"],
    )


def _pieces(data: bytes, size: int) -> list[bytes]:
    return [data[i : i + size] for i in range(0, len(data), size)] or [b""]


FEEDS = {
    "whole": lambda data: [data],
    "bytewise": lambda data: _pieces(data, 1),
    "pieces_of_7": lambda data: _pieces(data, 7),
    "pieces_of_33": lambda data: _pieces(data, 33),
    "with_empty_pieces": lambda data: [b"", *_pieces(data, 50), b""],
}


# -- the files themselves ------------------------------------------------------------------


def _load_generator() -> ModuleType:
    spec = importlib.util.spec_from_file_location(
        "mizaic_envelope_vector_generator", VECTORS / "generate.py"
    )
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_committed_vector_files_equal_the_generator_output() -> None:
    rendered = _load_generator().render_all()
    assert sorted(rendered) == sorted(VECTOR_FILES)
    for name, text in rendered.items():
        assert (VECTORS / name).read_text(encoding="utf-8") == text, (
            f"{name} is out of date: the envelope format changed. If deliberate, bump the "
            "format version and run `python tests/vectors/generate.py`."
        )


def test_every_vector_file_has_valid_and_invalid_cases_with_unique_ids() -> None:
    for document in (FIELD, CONTENT, WRAPPED):
        assert document["valid"]
        assert document["invalid"]
        ids = [case["id"] for case in document["valid"] + document["invalid"]]
        assert len(ids) == len(set(ids))
        assert all(case["error"] == "IntegrityError" for case in document["invalid"])


# -- field envelopes -----------------------------------------------------------------------


@pytest.mark.parametrize("case", FIELD["valid"], ids=_ids)
def test_field_vector_encrypts_to_the_expected_envelope(case: dict[str, Any]) -> None:
    envelope = encrypt_field(
        _record_keys(case),
        _b(case["plaintext"]),
        controller_id=case["controller_id"],
        record_id=case["record_id"],
        field_path=case["field_path"],
        nonce=_b(case["nonce"]),
    )
    assert envelope.hex() == case["envelope"]


@pytest.mark.parametrize("case", FIELD["valid"], ids=_ids)
def test_field_vector_decrypts_to_its_plaintext(case: dict[str, Any]) -> None:
    plaintext = decrypt_field(
        _record_keys(case),
        _b(case["envelope"]),
        controller_id=case["controller_id"],
        record_id=case["record_id"],
        field_path=case["field_path"],
    )
    assert plaintext.hex() == case["plaintext"]


@pytest.mark.parametrize("case", FIELD["valid"], ids=_ids)
def test_field_vector_header_names_its_key_id_and_version(case: dict[str, Any]) -> None:
    header = parse_field_header(_b(case["envelope"]))
    assert header.skid.hex() == case["skid"]
    assert header.key_version == case["key_version"]


@pytest.mark.parametrize("case", FIELD["invalid"], ids=_ids)
def test_invalid_field_vector_fails_to_decrypt(case: dict[str, Any]) -> None:
    keys = _record_keys(case)
    with pytest.raises(IntegrityError):
        decrypt_field(
            keys,
            _b(case["envelope"]),
            controller_id=case["controller_id"],
            record_id=case["record_id"],
            field_path=case["field_path"],
        )


@pytest.mark.parametrize("case", FIELD["invalid"], ids=_ids)
def test_invalid_field_vector_header_parses_only_where_the_vector_says(
    case: dict[str, Any],
) -> None:
    if case["header_parses"]:
        parse_field_header(_b(case["envelope"]))
    else:
        with pytest.raises(IntegrityError):
            parse_field_header(_b(case["envelope"]))


# -- content streams -----------------------------------------------------------------------


@pytest.mark.parametrize("feed", sorted(FEEDS))
@pytest.mark.parametrize("case", CONTENT["valid"], ids=_ids)
def test_content_vector_encrypts_to_the_expected_stream(case: dict[str, Any], feed: str) -> None:
    plaintext = _b(case["plaintext"])
    stream = b"".join(
        encrypt_content(
            _record_keys(case),
            FEEDS[feed](plaintext),
            controller_id=case["controller_id"],
            record_id=case["record_id"],
            salt=_b(case["salt"]),
            chunk_size=case["chunk_size"],
        )
    )
    assert stream.hex() == case["envelope"]


@pytest.mark.parametrize("case", CONTENT["valid"], ids=_ids)
def test_content_vector_length_is_predicted_exactly(case: dict[str, Any]) -> None:
    plaintext_length = len(_b(case["plaintext"]))
    assert encrypted_content_length(plaintext_length, case["chunk_size"]) == len(
        _b(case["envelope"])
    )


@pytest.mark.parametrize("feed", sorted(FEEDS))
@pytest.mark.parametrize("case", CONTENT["valid"], ids=_ids)
def test_content_vector_decrypts_to_its_plaintext_however_it_is_fed(
    case: dict[str, Any], feed: str
) -> None:
    plaintext = b"".join(
        decrypt_content(
            _record_keys(case),
            FEEDS[feed](_b(case["envelope"])),
            controller_id=case["controller_id"],
            record_id=case["record_id"],
        )
    )
    assert plaintext.hex() == case["plaintext"]


@pytest.mark.parametrize("case", CONTENT["valid"], ids=_ids)
def test_content_vector_header_names_its_key_and_chunk_size(case: dict[str, Any]) -> None:
    header = parse_content_header(_b(case["envelope"]))
    assert header.skid.hex() == case["skid"]
    assert header.key_version == case["key_version"]
    assert header.chunk_size == case["chunk_size"]


@pytest.mark.parametrize("feed", sorted(FEEDS))
@pytest.mark.parametrize("case", CONTENT["invalid"], ids=_ids)
def test_invalid_content_vector_fails_to_decrypt_however_it_is_fed(
    case: dict[str, Any], feed: str
) -> None:
    keys = _record_keys(case)
    pieces = FEEDS[feed](_b(case["envelope"]))
    with pytest.raises(IntegrityError):
        b"".join(
            decrypt_content(
                keys, pieces, controller_id=case["controller_id"], record_id=case["record_id"]
            )
        )


@pytest.mark.parametrize("case", CONTENT["invalid"], ids=_ids)
def test_invalid_content_vector_header_parses_only_where_the_vector_says(
    case: dict[str, Any],
) -> None:
    if case["header_parses"]:
        parse_content_header(_b(case["envelope"]))
    else:
        with pytest.raises(IntegrityError):
            parse_content_header(_b(case["envelope"]))


# -- wrapped keys --------------------------------------------------------------------------


@pytest.mark.parametrize("case", WRAPPED["valid"], ids=_ids)
def test_wrapped_key_vector_wraps_to_the_expected_bytes(case: dict[str, Any]) -> None:
    wrapped = wrap_key(
        _b(case["wrapping_key"]),
        _b(case["key"]),
        wrapping_key_version=case["wrapping_key_version"],
        context=_b(case["context"]),
        nonce=_b(case["nonce"]),
    )
    assert wrapped.hex() == case["wrapped"]


@pytest.mark.parametrize("case", WRAPPED["valid"], ids=_ids)
def test_wrapped_key_vector_unwraps_to_its_key(case: dict[str, Any]) -> None:
    key = unwrap_key(_b(case["wrapping_key"]), _b(case["wrapped"]), context=_b(case["context"]))
    assert key.hex() == case["key"]
    assert wrapped_key_version(_b(case["wrapped"])) == case["wrapping_key_version"]


@pytest.mark.parametrize("case", WRAPPED["invalid"], ids=_ids)
def test_invalid_wrapped_key_vector_fails_to_unwrap(case: dict[str, Any]) -> None:
    with pytest.raises(IntegrityError):
        unwrap_key(_b(case["wrapping_key"]), _b(case["wrapped"]), context=_b(case["context"]))


@pytest.mark.parametrize("case", WRAPPED["invalid"], ids=_ids)
def test_invalid_wrapped_key_vector_version_reads_only_where_the_vector_says(
    case: dict[str, Any],
) -> None:
    if case["header_parses"]:
        wrapped_key_version(_b(case["wrapped"]))
    else:
        with pytest.raises(IntegrityError):
            wrapped_key_version(_b(case["wrapped"]))


# -- one opaque error ----------------------------------------------------------------------


def _failure_message(action: Any) -> str:
    with pytest.raises(IntegrityError) as excinfo:
        action()
    assert type(excinfo.value) is IntegrityError
    return str(excinfo.value)


def test_every_invalid_vector_fails_with_the_same_opaque_message() -> None:
    messages = set()
    for case in FIELD["invalid"]:
        messages.add(
            _failure_message(
                lambda case=case: decrypt_field(
                    _record_keys(case),
                    _b(case["envelope"]),
                    controller_id=case["controller_id"],
                    record_id=case["record_id"],
                    field_path=case["field_path"],
                )
            )
        )
    for case in CONTENT["invalid"]:
        messages.add(
            _failure_message(
                lambda case=case: b"".join(
                    decrypt_content(
                        _record_keys(case),
                        [_b(case["envelope"])],
                        controller_id=case["controller_id"],
                        record_id=case["record_id"],
                    )
                )
            )
        )
    for case in WRAPPED["invalid"]:
        messages.add(
            _failure_message(
                lambda case=case: unwrap_key(
                    _b(case["wrapping_key"]), _b(case["wrapped"]), context=_b(case["context"])
                )
            )
        )
    assert len(messages) == 1


# -- an independent computation from the documented layout ---------------------------------
#
# Re-derives the vectors with cryptography's primitives and struct alone, so a vector that
# merely records what the implementation happens to do (rather than the documented format)
# shows up here.


def _canonical(*parts: str | bytes) -> bytes:
    out = b""
    for part in parts:
        raw = part.encode("utf-8") if isinstance(part, str) else part
        out += struct.pack(">I", len(raw)) + raw
    return out


def _binding(controller_id: str, record_id: str, field_path: str) -> bytes:
    return b"mizaic/v1/bind" + _canonical(controller_id, record_id, field_path)


def _independent_record_keys(case: dict[str, Any]) -> tuple[bytes, bytes, bytes]:
    okm = HKDF(
        algorithm=hashes.SHA256(),
        length=128,
        salt=None,
        info=b"mizaic/v1/record-keys"
        + _canonical(
            case["controller_id"],
            _b(case["skid"]),
            struct.pack(">I", case["key_version"]),
            case["record_id"],
        ),
    ).derive(_b(case["subject_key"]))
    return okm[0:32], okm[32:64], okm[96:128]  # field key, commitment, content secret


@pytest.mark.parametrize("case", FIELD["valid"], ids=_ids)
def test_field_vector_matches_an_independent_computation(case: dict[str, Any]) -> None:
    field_key, commitment, _ = _independent_record_keys(case)
    nonce = _b(case["nonce"])
    header = (
        b"MZ"
        + bytes([1, 1, 1])
        + _b(case["skid"])
        + struct.pack(">I", case["key_version"])
        + commitment
        + nonce
    )
    assert len(header) == FIELD["header_bytes"]
    aad = header + _binding(case["controller_id"], case["record_id"], case["field_path"])
    expected = header + AESGCM(field_key).encrypt(nonce, _b(case["plaintext"]), aad)
    assert expected.hex() == case["envelope"]


@pytest.mark.parametrize("case", CONTENT["valid"], ids=_ids)
def test_content_vector_matches_an_independent_computation(case: dict[str, Any]) -> None:
    _, commitment, content_secret = _independent_record_keys(case)
    salt = _b(case["salt"])
    chunk_size = case["chunk_size"]
    header = (
        b"MZ"
        + bytes([1, 2, 1])
        + _b(case["skid"])
        + struct.pack(">I", case["key_version"])
        + commitment
        + salt
        + struct.pack(">I", chunk_size)
    )
    assert len(header) == CONTENT["header_bytes"]
    bound = _binding(case["controller_id"], case["record_id"], "$content")
    content_key = HKDF(
        algorithm=hashes.SHA256(), length=32, salt=salt, info=b"mizaic/v1/content" + bound
    ).derive(content_secret)
    plaintext = _b(case["plaintext"])
    chunks = _pieces(plaintext, chunk_size)
    out = header
    for index, chunk in enumerate(chunks):
        final = index == len(chunks) - 1
        nonce = index.to_bytes(11, "big") + bytes([final])
        aad = header + bound + struct.pack(">QB", index, final)
        out += AESGCM(content_key).encrypt(nonce, chunk, aad)
    assert out.hex() == case["envelope"]


@pytest.mark.parametrize("case", WRAPPED["valid"], ids=_ids)
def test_wrapped_key_vector_matches_an_independent_computation(case: dict[str, Any]) -> None:
    nonce = _b(case["nonce"])
    header = b"MZ" + bytes([1, 3, 1]) + struct.pack(">I", case["wrapping_key_version"]) + nonce
    assert len(header) == WRAPPED["header_bytes"]
    body = AESGCM(_b(case["wrapping_key"])).encrypt(
        nonce, _b(case["key"]), header + _b(case["context"])
    )
    assert (header + body).hex() == case["wrapped"]


@pytest.mark.parametrize("case", CONTENT["valid"], ids=_ids)
def test_content_decryptor_reports_length_and_digest_of_the_plaintext(
    case: dict[str, Any],
) -> None:
    decryptor = ContentDecryptor(
        _record_keys(case), controller_id=case["controller_id"], record_id=case["record_id"]
    )
    plaintext = decryptor.update(_b(case["envelope"])) + decryptor.finalize()
    assert plaintext.hex() == case["plaintext"]
    assert decryptor.plaintext_length == len(plaintext)
    assert decryptor.plaintext_sha256 == hashlib.sha256(plaintext).digest()
