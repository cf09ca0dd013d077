"""Properties of the envelope format v1, checked with hypothesis.

Round trips for any plaintext and any way of feeding a stream; and for any bytes at all,
and any single mutation of a valid envelope, the only outcome besides success is
:class:`~mizaic_processor.errors.IntegrityError`.
"""

from __future__ import annotations

import contextlib
import itertools
from collections.abc import Callable

import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from mizaic_processor._core.envelope import (
    CONTENT_HEADER_BYTES,
    FIELD_HEADER_BYTES,
    ContentDecryptor,
    ContentEncryptor,
    ContentHeader,
    FieldHeader,
    RecordKeys,
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

SUBJECT_KEY = bytes(range(32))
SKID = bytes(range(0xA0, 0xB0))
KEY_VERSION = 3
CONTROLLER = "controller-0001"
RECORD = "record-0001"
FIELD = "clinical.diagnosis"
SALT = bytes(range(0xD0, 0xF0))
NONCE = bytes(range(0xC0, 0xCC))
WRAPPING_KEY = bytes(range(0x40, 0x60))
CONTEXT = b"mizaic/v1/subject-key/controller-0001"

KEYS = derive_record_keys(
    SUBJECT_KEY, skid=SKID, key_version=KEY_VERSION, controller_id=CONTROLLER, record_id=RECORD
)
FIELD_ENVELOPE = encrypt_field(
    KEYS,
    b'{"code":"I10","text":"essential hypertension"}',
    controller_id=CONTROLLER,
    record_id=RECORD,
    field_path=FIELD,
    nonce=NONCE,
)
CONTENT_CHUNK_SIZE = 16
CONTENT_STREAM = b"".join(
    encrypt_content(
        KEYS,
        [bytes(range(50))],  # three full chunks and a final one of 2 bytes
        controller_id=CONTROLLER,
        record_id=RECORD,
        salt=SALT,
        chunk_size=CONTENT_CHUNK_SIZE,
    )
)
WRAPPED = wrap_key(WRAPPING_KEY, SUBJECT_KEY, wrapping_key_version=2, context=CONTEXT, nonce=NONCE)

CHUNK_SIZES = st.sampled_from([16, 17, 64, 1000])
IDS = st.text(alphabet=st.characters(codec="utf-8"), max_size=24)
KEYS_32 = st.binary(min_size=32, max_size=32)
NONCES = st.binary(min_size=12, max_size=12)
SALTS = st.binary(min_size=32, max_size=32)

# Cheap examples; no deadline, so a slow machine cannot make the suite flaky.
FAST = settings(deadline=None, max_examples=60)
THOROUGH = settings(deadline=None, max_examples=300)


def _keys(controller_id: str = CONTROLLER, record_id: str = RECORD) -> RecordKeys:
    return derive_record_keys(
        SUBJECT_KEY,
        skid=SKID,
        key_version=KEY_VERSION,
        controller_id=controller_id,
        record_id=record_id,
    )


@st.composite
def _splits(draw: st.DrawFn, data: bytes) -> list[bytes]:
    """``data`` cut at arbitrary points, empty pieces included."""
    cuts = sorted(draw(st.lists(st.integers(0, len(data)), max_size=8)))
    bounds = [0, *cuts, len(data)]
    return [data[a:b] for a, b in itertools.pairwise(bounds)]


def _decrypt_stream(
    pieces: list[bytes],
    keys: RecordKeys = KEYS,
    controller_id: str = CONTROLLER,
    record_id: str = RECORD,
) -> bytes:
    return b"".join(decrypt_content(keys, pieces, controller_id=controller_id, record_id=record_id))


def _returns_or_raises_integrity_error(action: Callable[[], object]) -> None:
    """Any exception other than IntegrityError propagates and fails the test."""
    with contextlib.suppress(IntegrityError):
        action()


def _near(valid: bytes) -> st.SearchStrategy[bytes]:
    """Arbitrary bytes, or a prefix of ``valid`` followed by arbitrary bytes (so headers
    that parse, and bodies of every length, are reached), never ``valid`` itself."""
    prefixed = st.builds(
        lambda cut, tail: valid[:cut] + tail,
        st.integers(0, len(valid)),
        st.binary(max_size=80),
    )
    return st.one_of(st.binary(max_size=200), prefixed).filter(lambda data: data != valid)


# -- round trips ---------------------------------------------------------------------------


@FAST
@given(plaintext=st.binary(max_size=2048), nonce=NONCES, field_path=IDS, record_id=IDS)
def test_field_round_trips_any_plaintext(
    plaintext: bytes, nonce: bytes, field_path: str, record_id: str
) -> None:
    keys = _keys(record_id=record_id)
    envelope = encrypt_field(
        keys,
        plaintext,
        controller_id=CONTROLLER,
        record_id=record_id,
        field_path=field_path,
        nonce=nonce,
    )
    assert len(envelope) == FIELD_HEADER_BYTES + len(plaintext) + 16
    assert parse_field_header(envelope) == FieldHeader(skid=SKID, key_version=KEY_VERSION)
    assert (
        decrypt_field(
            keys, envelope, controller_id=CONTROLLER, record_id=record_id, field_path=field_path
        )
        == plaintext
    )


@FAST
@given(data=st.data(), plaintext=st.binary(max_size=2500), chunk_size=CHUNK_SIZES, salt=SALTS)
def test_content_round_trips_any_size_however_input_and_ciphertext_are_split(
    data: st.DataObject, plaintext: bytes, chunk_size: int, salt: bytes
) -> None:
    pieces = data.draw(_splits(plaintext), label="plaintext pieces")
    stream = b"".join(
        encrypt_content(
            KEYS,
            pieces,
            controller_id=CONTROLLER,
            record_id=RECORD,
            salt=salt,
            chunk_size=chunk_size,
        )
    )
    assert len(stream) == encrypted_content_length(len(plaintext), chunk_size)
    assert parse_content_header(stream) == ContentHeader(
        skid=SKID, key_version=KEY_VERSION, chunk_size=chunk_size
    )
    feed = data.draw(_splits(stream), label="ciphertext pieces")
    assert _decrypt_stream(feed) == plaintext


_BUFFER_KINDS = ["bytes", "bytearray", "view of bytes", "view of bytearray", "slice view"]


@FAST
@given(
    data=st.data(), plaintext=st.binary(max_size=2500), chunk_size=CHUNK_SIZES,
    kinds=st.lists(st.sampled_from(_BUFFER_KINDS), min_size=1, max_size=9),
)
def test_content_stream_is_the_same_whatever_buffers_feed_it_and_however_they_change(
    data: st.DataObject, plaintext: bytes, chunk_size: int, kinds: list[str]
) -> None:
    # The encryptor holds the last chunk back, as a view when its input cannot change:
    # a caller's mutable buffer reused (here: zeroed) after update() must not leak into
    # the ciphertext, and a read-only view of bytes must give the same stream as bytes.
    def encryptor() -> ContentEncryptor:
        return ContentEncryptor(KEYS, controller_id=CONTROLLER, record_id=RECORD, salt=SALT,
                                chunk_size=chunk_size)

    whole = encryptor()
    expected = whole.update(plaintext) + whole.finalize()
    fed = encryptor()
    out = []
    for i, piece in enumerate(data.draw(_splits(plaintext), label="pieces")):
        kind = kinds[i % len(kinds)]
        buffer: bytes | bytearray | memoryview
        if kind == "bytes":
            buffer = piece
        elif kind == "bytearray":
            buffer = bytearray(piece)
        elif kind == "view of bytes":
            buffer = memoryview(piece)
        elif kind == "view of bytearray":
            buffer = memoryview(bytearray(piece))
        else:  # a read-only view into the middle of a larger bytes object
            buffer = memoryview(b"<" + piece + b">")[1:-1]
        out.append(fed.update(buffer))
        if isinstance(buffer, bytearray) or (
            isinstance(buffer, memoryview) and not buffer.readonly
        ):
            buffer[:] = bytes(len(buffer))
    out.append(fed.finalize())
    assert b"".join(out) == expected
    assert fed.plaintext_length == len(plaintext)
    assert fed.plaintext_sha256 == whole.plaintext_sha256
    assert _decrypt_stream([b"".join(out)]) == plaintext


@FAST
@given(
    data=st.data(),
    chunk_size=CHUNK_SIZES,
    chunks=st.integers(0, 4),
    offset=st.sampled_from([-1, 0, 1]),
)
def test_content_round_trips_empty_and_exact_chunk_multiples(
    data: st.DataObject, chunk_size: int, chunks: int, offset: int
) -> None:
    size = max(0, chunks * chunk_size + offset)
    plaintext = bytes(i % 251 for i in range(size))
    stream = b"".join(
        encrypt_content(
            KEYS,
            [plaintext],
            controller_id=CONTROLLER,
            record_id=RECORD,
            salt=SALT,
            chunk_size=chunk_size,
        )
    )
    assert len(stream) == encrypted_content_length(size, chunk_size)
    assert _decrypt_stream(data.draw(_splits(stream))) == plaintext


@FAST
@given(data=st.data(), plaintext=st.binary(max_size=600), chunk_size=CHUNK_SIZES)
def test_streaming_encryptor_and_decryptor_agree_on_length_and_digest(
    data: st.DataObject, plaintext: bytes, chunk_size: int
) -> None:
    stream = b"".join(
        encrypt_content(
            KEYS,
            data.draw(_splits(plaintext)),
            controller_id=CONTROLLER,
            record_id=RECORD,
            salt=SALT,
            chunk_size=chunk_size,
        )
    )
    decryptor = ContentDecryptor(KEYS, controller_id=CONTROLLER, record_id=RECORD)
    out = b"".join(decryptor.update(piece) for piece in data.draw(_splits(stream)))
    out += decryptor.finalize()
    assert out == plaintext
    assert decryptor.plaintext_length == len(plaintext)


@FAST
@given(plaintext_length=st.integers(0, 10_000), chunk_size=CHUNK_SIZES)
def test_encrypted_content_length_is_header_plus_plaintext_plus_a_tag_per_chunk(
    plaintext_length: int, chunk_size: int
) -> None:
    stream = b"".join(
        encrypt_content(
            KEYS,
            [bytes(plaintext_length)],
            controller_id=CONTROLLER,
            record_id=RECORD,
            salt=SALT,
            chunk_size=chunk_size,
        )
    )
    chunks = max(1, -(-plaintext_length // chunk_size))
    assert encrypted_content_length(plaintext_length, chunk_size) == len(stream)
    assert len(stream) == CONTENT_HEADER_BYTES + plaintext_length + 16 * chunks


@FAST
@given(
    key=st.binary(max_size=64), context=st.binary(max_size=64), version=st.integers(0, 2**32 - 1)
)
def test_wrapped_key_round_trips_and_names_its_wrapping_key_version(
    key: bytes, context: bytes, version: int
) -> None:
    wrapped = wrap_key(
        WRAPPING_KEY, key, wrapping_key_version=version, context=context, nonce=NONCE
    )
    assert wrapped_key_version(wrapped) == version
    assert unwrap_key(WRAPPING_KEY, wrapped, context=context) == key


# -- arbitrary bytes: IntegrityError or nothing --------------------------------------------


@THOROUGH
@given(envelope=_near(FIELD_ENVELOPE))
def test_arbitrary_bytes_never_decrypt_as_a_field(envelope: bytes) -> None:
    with pytest.raises(IntegrityError):
        decrypt_field(KEYS, envelope, controller_id=CONTROLLER, record_id=RECORD, field_path=FIELD)


@THOROUGH
@given(envelope=st.one_of(_near(FIELD_ENVELOPE), _near(CONTENT_STREAM), _near(WRAPPED)))
def test_parsing_arbitrary_bytes_raises_nothing_but_integrity_error(envelope: bytes) -> None:
    _returns_or_raises_integrity_error(lambda: parse_field_header(envelope))
    _returns_or_raises_integrity_error(lambda: parse_content_header(envelope))
    _returns_or_raises_integrity_error(lambda: wrapped_key_version(envelope))


@THOROUGH
@given(data=st.data(), stream=_near(CONTENT_STREAM))
def test_arbitrary_bytes_never_decrypt_as_content_however_they_are_fed(
    data: st.DataObject, stream: bytes
) -> None:
    with pytest.raises(IntegrityError):
        _decrypt_stream(data.draw(_splits(stream)))


@THOROUGH
@given(
    wrapped=_near(WRAPPED),
    wrapping_key=st.one_of(st.just(WRAPPING_KEY), st.binary(max_size=40)),
    context=st.one_of(st.just(CONTEXT), st.binary(max_size=40)),
)
def test_arbitrary_bytes_never_unwrap(wrapped: bytes, wrapping_key: bytes, context: bytes) -> None:
    with pytest.raises(IntegrityError):
        unwrap_key(wrapping_key, wrapped, context=context)


# -- single mutations of a valid envelope ---------------------------------------------------


def _flip_bit(data: bytes, bit: int) -> bytes:
    out = bytearray(data)
    out[bit // 8] ^= 1 << (bit % 8)
    return bytes(out)


def _mutations(valid: bytes) -> st.SearchStrategy[bytes]:
    """One bit flipped anywhere, a truncation to any shorter length, one byte inserted or
    deleted anywhere."""
    return st.one_of(
        st.integers(0, 8 * len(valid) - 1).map(lambda bit: _flip_bit(valid, bit)),
        st.integers(0, len(valid) - 1).map(lambda n: valid[:n]),
        st.builds(
            lambda at, byte: valid[:at] + bytes([byte]) + valid[at:],
            st.integers(0, len(valid)),
            st.integers(0, 255),
        ),
        st.integers(0, len(valid) - 1).map(lambda at: valid[:at] + valid[at + 1 :]),
    )


@THOROUGH
@given(envelope=_mutations(FIELD_ENVELOPE))
def test_any_single_mutation_of_a_field_envelope_fails_to_decrypt(envelope: bytes) -> None:
    assume(envelope != FIELD_ENVELOPE)
    with pytest.raises(IntegrityError):
        decrypt_field(KEYS, envelope, controller_id=CONTROLLER, record_id=RECORD, field_path=FIELD)


@THOROUGH
@given(data=st.data(), stream=_mutations(CONTENT_STREAM))
def test_any_single_mutation_of_a_content_stream_fails_to_decrypt(
    data: st.DataObject, stream: bytes
) -> None:
    assume(stream != CONTENT_STREAM)
    with pytest.raises(IntegrityError):
        _decrypt_stream(data.draw(_splits(stream)))


@THOROUGH
@given(wrapped=_mutations(WRAPPED))
def test_any_single_mutation_of_a_wrapped_key_fails_to_unwrap(wrapped: bytes) -> None:
    assume(wrapped != WRAPPED)
    with pytest.raises(IntegrityError):
        unwrap_key(WRAPPING_KEY, wrapped, context=CONTEXT)


# -- moved ciphertexts ---------------------------------------------------------------------


@FAST
@given(record_id=IDS.filter(lambda r: r != RECORD))
def test_ciphertext_moved_to_another_record_fails_to_decrypt(record_id: str) -> None:
    for keys in (_keys(record_id=record_id), KEYS):  # keys of the new or the old record
        with pytest.raises(IntegrityError):
            decrypt_field(
                keys,
                FIELD_ENVELOPE,
                controller_id=CONTROLLER,
                record_id=record_id,
                field_path=FIELD,
            )


@FAST
@given(controller_id=IDS.filter(lambda c: c != CONTROLLER))
def test_ciphertext_moved_to_another_controller_fails_to_decrypt(controller_id: str) -> None:
    for keys in (_keys(controller_id=controller_id), KEYS):
        with pytest.raises(IntegrityError):
            decrypt_field(
                keys,
                FIELD_ENVELOPE,
                controller_id=controller_id,
                record_id=RECORD,
                field_path=FIELD,
            )


@FAST
@given(field_path=IDS.filter(lambda f: f != FIELD))
def test_ciphertext_moved_to_another_field_fails_to_decrypt(field_path: str) -> None:
    with pytest.raises(IntegrityError):
        decrypt_field(
            KEYS,
            FIELD_ENVELOPE,
            controller_id=CONTROLLER,
            record_id=RECORD,
            field_path=field_path,
        )


@FAST
@given(controller_id=IDS, record_id=IDS)
def test_content_moved_to_another_record_or_controller_fails_to_decrypt(
    controller_id: str, record_id: str
) -> None:
    assume((controller_id, record_id) != (CONTROLLER, RECORD))
    for keys in (_keys(controller_id, record_id), KEYS):
        with pytest.raises(IntegrityError):
            _decrypt_stream([CONTENT_STREAM], keys, controller_id, record_id)


@FAST
@given(subject_key=KEYS_32.filter(lambda k: k != SUBJECT_KEY))
def test_ciphertext_decrypts_only_under_its_own_subject_key(subject_key: bytes) -> None:
    keys = derive_record_keys(
        subject_key,
        skid=SKID,
        key_version=KEY_VERSION,
        controller_id=CONTROLLER,
        record_id=RECORD,
    )
    with pytest.raises(IntegrityError):
        decrypt_field(
            keys, FIELD_ENVELOPE, controller_id=CONTROLLER, record_id=RECORD, field_path=FIELD
        )
    with pytest.raises(IntegrityError):
        _decrypt_stream([CONTENT_STREAM], keys)


@FAST
@given(context=st.binary(max_size=64).filter(lambda c: c != CONTEXT))
def test_wrapped_key_moved_to_another_context_fails_to_unwrap(context: bytes) -> None:
    with pytest.raises(IntegrityError):
        unwrap_key(WRAPPING_KEY, WRAPPED, context=context)


@FAST
@given(wrapping_key=KEYS_32.filter(lambda k: k != WRAPPING_KEY))
def test_wrapped_key_unwraps_only_under_its_own_wrapping_key(wrapping_key: bytes) -> None:
    with pytest.raises(IntegrityError):
        unwrap_key(wrapping_key, WRAPPED, context=CONTEXT)
