"""Envelope format v1: field envelopes, chunked content streams and wrapped keys.

Pure: bytes and keys in, bytes out. Randomness enters through ``nonce`` / ``salt``
parameters (callers pass ``os.urandom`` output; test vectors pass fixed values).

Every output starts with the magic ``b"MZ"`` and a format version byte, then a kind byte
and an algorithm-suite byte. Suite 1 is HKDF-SHA256 key derivation, AES-256-GCM, and a
32-byte key commitment (AES-GCM alone is not key-committing: without the commitment a
crafted ciphertext could decrypt under two keys).

Field envelope (kind 1)::

    magic(2) version(1) kind(1) suite(1) skid(16) key_version(4) commitment(32)
    nonce(12) ciphertext||tag(16)

    AAD = header (all bytes before the ciphertext) || binding(controller, record, field)

Content stream (kind 2), for documents of any size::

    magic(2) version(1) kind(2) suite(1) skid(16) key_version(4) commitment(32)
    salt(32) chunk_size(4)   then chunks, each ciphertext||tag(16)

    content key = HKDF(record content secret, salt, binding)
    chunk i: nonce = i (11 bytes, big endian) || final flag (1 byte)
             AAD   = header || binding || i (8 bytes) || final flag

Every chunk but the last holds exactly ``chunk_size`` plaintext bytes; the last holds
0..chunk_size bytes and is the only one flagged final, so reordering, dropping,
truncating at a chunk boundary, or appending data all fail authentication.

Wrapped key (kind 3: a subject key or the blind-index key under the controller key)::

    magic(2) version(1) kind(3) suite(1) wrapping_key_version(4) nonce(12) ct||tag

Every parse or authentication failure raises the one opaque
:class:`~mizaic_processor.errors.IntegrityError`.
"""

from __future__ import annotations

import hmac
import os
import struct
import threading
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from hashlib import sha256

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.hmac import HMAC
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from mizaic_processor import _forks
from mizaic_processor.errors import IntegrityError

MAGIC = b"MZ"
FORMAT_VERSION = 1
SUITE_V1 = 1
KIND_FIELD = 1
KIND_CONTENT = 2
KIND_WRAPPED_KEY = 3

KEY_BYTES = 32
SKID_BYTES = 16
NONCE_BYTES = 12
TAG_BYTES = 16
COMMIT_BYTES = 32
SALT_BYTES = 32

MIN_CHUNK_SIZE = 16
MAX_CHUNK_SIZE = 16 * 1024 * 1024
DEFAULT_CHUNK_SIZE = 1024 * 1024

_PREFIX = struct.Struct(">2sBBB")  # magic, version, kind, suite
_FIELD_HEADER = struct.Struct(f">2sBBB{SKID_BYTES}sI{COMMIT_BYTES}s{NONCE_BYTES}s")
_CONTENT_HEADER = struct.Struct(f">2sBBB{SKID_BYTES}sI{COMMIT_BYTES}s{SALT_BYTES}sI")
_WRAPPED_HEADER = struct.Struct(f">2sBBBI{NONCE_BYTES}s")

FIELD_HEADER_BYTES = _FIELD_HEADER.size
# the field header up to (not including) the nonce: the same for every field of a record
_FIELD_HEADER_FIXED = struct.Struct(f">2sBBB{SKID_BYTES}sI{COMMIT_BYTES}s")
_FIELD_HEADER_FIXED_BYTES = _FIELD_HEADER_FIXED.size
_MIN_FIELD_ENVELOPE = FIELD_HEADER_BYTES + TAG_BYTES
_SKID_AND_VERSION = struct.Struct(f">I{SKID_BYTES}sII")  # canonical(skid, version as 4 bytes)
CONTENT_HEADER_BYTES = _CONTENT_HEADER.size
_CONTENT_FIELD = "$content"

_SHA256 = hashes.SHA256()  # an algorithm descriptor, no state

_INTEGRITY_MESSAGE = "stored data failed integrity verification"


def _fail() -> IntegrityError:
    return IntegrityError(_INTEGRITY_MESSAGE)


def canonical(*parts: str | bytes) -> bytes:
    """Encode parts unambiguously: each as a 4-byte big-endian length and its bytes.

    :param parts: strings (encoded as UTF-8) or bytes.
    :returns: the encoding, injective over sequences of parts.
    """
    out = []
    for part in parts:
        raw = part.encode("utf-8") if isinstance(part, str) else part
        out.append(len(raw).to_bytes(4, "big"))
        out.append(raw)
    return b"".join(out)


_BIND_PREFIX = b"mizaic/v1/bind"


def binding(controller_id: str, record_id: str, field_path: str) -> bytes:
    """The associated data that ties a ciphertext to its controller, record and field.

    (Field envelopes on the record paths build the same bytes from the prefix their
    :class:`RecordKeys` precomputed; see :func:`_field_aad`.)
    """
    return _BIND_PREFIX + canonical(controller_id, record_id, field_path)


@dataclass(frozen=True, repr=False)
class RecordKeys:
    """Keys derived for one record from its subject's key. Never logged or printed.

    :ivar skid: the subject key id (16 bytes), carried in every envelope header.
    :ivar key_version: the subject key's version, carried in every header.

    The private fields are computed once per record by :func:`derive_record_keys`, for
    the per-field hot path: the AES-GCM cipher under the field key, an HMAC-SHA256 keyed
    with the tag key (copied for each tag), the part of every field envelope header before
    the nonce, and the binding prefix of the controller and record the keys were derived
    for.
    """

    skid: bytes
    key_version: int
    field_key: bytes
    commitment: bytes
    tag_key: bytes
    content_secret: bytes
    _aead: AESGCM = field(compare=False)
    _tag_mac: HMAC = field(compare=False)
    _header_fixed: bytes = field(compare=False)
    _controller_id: str = field(compare=False)
    _record_id: str = field(compare=False)
    _bind_prefix: bytes = field(compare=False)

    def __repr__(self) -> str:
        return "RecordKeys(<redacted>)"


def derive_record_keys(
    subject_key: bytes, *, skid: bytes, key_version: int, controller_id: str, record_id: str
) -> RecordKeys:
    """Derive a record's field key, key commitment, field-name tag key and content secret.

    :param subject_key: the subject's 32-byte data key.
    :param skid: the subject key id (16 bytes).
    :param key_version: the subject key version.
    :param controller_id: the controller the record belongs to.
    :param record_id: the record id.
    :raises IntegrityError: if the key or key id has the wrong length.
    """
    if len(subject_key) != KEY_BYTES or len(skid) != SKID_BYTES:
        raise _fail()
    controller = canonical(controller_id)
    record = canonical(record_id)
    # b"mizaic/v1/record-keys" + canonical(controller_id, skid, version (4 bytes), record_id)
    info = b"".join((
        b"mizaic/v1/record-keys",
        controller,
        _SKID_AND_VERSION.pack(SKID_BYTES, skid, 4, key_version),
        record,
    ))
    okm = HKDF(algorithm=_SHA256, length=4 * KEY_BYTES, salt=None, info=info).derive(
        subject_key
    )
    field_key = okm[0:32]
    commitment = okm[32:64]
    tag_key = okm[64:96]
    # Exactly RecordKeys(**fields) (tested), built without the generated __init__: that
    # of a frozen dataclass pays an object.__setattr__ call per field, and every record
    # read or write derives its keys.
    keys = object.__new__(RecordKeys)
    keys.__dict__.update(
        skid=skid,
        key_version=key_version,
        field_key=field_key,
        commitment=commitment,
        tag_key=tag_key,
        content_secret=okm[96:128],
        _aead=AESGCM(field_key),
        _tag_mac=HMAC(tag_key, _SHA256),
        _header_fixed=_FIELD_HEADER_FIXED.pack(
            MAGIC, FORMAT_VERSION, KIND_FIELD, SUITE_V1, skid, key_version, commitment
        ),
        _controller_id=controller_id,
        _record_id=record_id,
        _bind_prefix=_BIND_PREFIX + controller + record,
    )
    return keys


def field_tag(keys: RecordKeys, field_name: str) -> str:
    """A keyed, opaque name under which a field's envelope is stored in the record.

    HMAC-SHA256 of the UTF-8 field name under the record's tag key, first 16 bytes, hex.
    Field names can themselves be clinical (``hiv_status``), so storage never sees them.
    """
    return field_tags(keys, (field_name,))[0]


def field_tags(keys: RecordKeys, field_names: Iterable[str]) -> list[str]:
    """:func:`field_tag` of each name, in order: one call for a whole record's fields."""
    keyed = keys._tag_mac
    tags = []
    for name in field_names:
        mac = keyed.copy()
        mac.update(name.encode("utf-8"))
        tags.append(mac.finalize()[:16].hex())
    return tags


def _field_aad(
    keys: RecordKeys, header: bytes, controller_id: str, record_id: str, field_path: str
) -> bytes:
    """A field envelope's associated data: ``header || binding(controller, record, field)``.

    Built from the record's precomputed binding prefix when the keys were derived for
    this controller and record (always, on the record paths); same bytes either way.
    :func:`decrypt_field` and :func:`encrypt_tagged_fields`, the per-field hot paths,
    inline the first case.
    """
    if controller_id == keys._controller_id and record_id == keys._record_id:
        raw = field_path.encode("utf-8")
        return b"".join((header, keys._bind_prefix, len(raw).to_bytes(4, "big"), raw))
    return header + binding(controller_id, record_id, field_path)


def encrypt_field(
    keys: RecordKeys,
    plaintext: bytes,
    *,
    controller_id: str,
    record_id: str,
    field_path: str,
    nonce: bytes,
) -> bytes:
    """Encrypt one field value into a self-describing field envelope.

    :param nonce: 12 fresh random bytes (``os.urandom(12)``); fixed only in test vectors.
    :raises IntegrityError: if the nonce has the wrong length.
    """
    if len(nonce) != NONCE_BYTES:
        raise _fail()
    header = keys._header_fixed + nonce
    aad = _field_aad(keys, header, controller_id, record_id, field_path)
    return header + keys._aead.encrypt(nonce, plaintext, aad)


def encrypt_tagged_fields(
    keys: RecordKeys,
    plaintexts: Iterable[tuple[str, bytes]],
    *,
    controller_id: str,
    record_id: str,
    nonce: Callable[[], bytes],
) -> dict[str, bytes]:
    """Encrypt a record's fields: ``{field_tag(name): encrypt_field(plaintext)}`` for each
    ``(name, plaintext)``, with a fresh ``nonce()`` each. The same bytes as those calls,
    in one pass over the record's precomputed keys (the write path's hot loop).

    :raises IntegrityError: if a nonce has the wrong length.
    """
    if controller_id != keys._controller_id or record_id != keys._record_id:
        return {
            field_tag(keys, name): encrypt_field(
                keys, plaintext, controller_id=controller_id, record_id=record_id,
                field_path=name, nonce=nonce(),
            )
            for name, plaintext in plaintexts
        }
    aead = keys._aead
    tag_mac = keys._tag_mac
    header_fixed = keys._header_fixed
    bind_prefix = keys._bind_prefix
    out = {}
    for name, plaintext in plaintexts:
        raw = name.encode("utf-8")
        mac = tag_mac.copy()
        mac.update(raw)
        fresh = nonce()
        if len(fresh) != NONCE_BYTES:
            raise _fail()
        header = header_fixed + fresh
        aad = b"".join((header, bind_prefix, len(raw).to_bytes(4, "big"), raw))  # _field_aad
        out[mac.finalize()[:16].hex()] = header + aead.encrypt(fresh, plaintext, aad)
    return out


@dataclass(frozen=True)
class FieldHeader:
    """The parsed, not yet authenticated, header of a field envelope."""

    skid: bytes
    key_version: int


def parse_field_header(envelope: bytes) -> FieldHeader:
    """Read the key id and version of a field envelope (to pick the key; no trial decryption).

    :raises IntegrityError: if the bytes are not a v1 field envelope.
    """
    if len(envelope) < FIELD_HEADER_BYTES + TAG_BYTES:
        raise _fail()
    magic, version, kind, suite, skid, key_version, _commit, _nonce = _FIELD_HEADER.unpack_from(
        envelope
    )
    if magic != MAGIC or version != FORMAT_VERSION or kind != KIND_FIELD or suite != SUITE_V1:
        raise _fail()
    return FieldHeader(skid=skid, key_version=key_version)


def decrypt_field(
    keys: RecordKeys, envelope: bytes, *, controller_id: str, record_id: str, field_path: str
) -> bytes:
    """Authenticate and decrypt a field envelope.

    :raises IntegrityError: on any malformed, moved, altered or wrongly keyed envelope.
    """
    if type(envelope) is not bytes:
        if not isinstance(envelope, bytes | bytearray | memoryview):
            raise _fail()
        envelope = bytes(envelope)
    # magic, version, kind, suite, key id, key version and key commitment must all be
    # exactly this record's: one constant-time comparison of the fixed header part.
    if len(envelope) < _MIN_FIELD_ENVELOPE or not hmac.compare_digest(
        envelope[:_FIELD_HEADER_FIXED_BYTES], keys._header_fixed
    ):
        raise _fail()
    header = envelope[:FIELD_HEADER_BYTES]
    if controller_id == keys._controller_id and record_id == keys._record_id:
        raw = field_path.encode("utf-8")  # _field_aad, inlined
        aad = b"".join((header, keys._bind_prefix, len(raw).to_bytes(4, "big"), raw))
    else:
        aad = _field_aad(keys, header, controller_id, record_id, field_path)
    try:
        return keys._aead.decrypt(
            envelope[_FIELD_HEADER_FIXED_BYTES:FIELD_HEADER_BYTES],
            envelope[FIELD_HEADER_BYTES:],
            aad,
        )
    except InvalidTag:
        raise _fail() from None


# -- content streams ---------------------------------------------------------------------


def _content_key(keys: RecordKeys, salt: bytes, bound: bytes) -> AESGCM:
    key = HKDF(
        algorithm=hashes.SHA256(), length=KEY_BYTES, salt=salt, info=b"mizaic/v1/content" + bound
    ).derive(keys.content_secret)
    return AESGCM(key)


def _chunk_nonce(index: int, final: bool) -> bytes:
    return index.to_bytes(11, "big") + (b"\x01" if final else b"\x00")


def _chunk_aad(header: bytes, bound: bytes, index: int, final: bool) -> bytes:
    return header + bound + struct.pack(">QB", index, 1 if final else 0)


def encrypted_content_length(plaintext_length: int, chunk_size: int) -> int:
    """The exact envelope length of a content stream of ``plaintext_length`` bytes."""
    chunks = max(1, -(-plaintext_length // chunk_size))
    return CONTENT_HEADER_BYTES + plaintext_length + chunks * TAG_BYTES


class ContentEncryptor:
    """Encrypts a byte stream into a content envelope, chunk by chunk, in bounded memory.

    Feed plaintext with :meth:`update` (returns ciphertext ready to write, possibly empty)
    and end with :meth:`finalize` (returns the final chunk). :attr:`header` is emitted by
    the first call to :meth:`update` or :meth:`finalize`.
    """

    def __init__(
        self,
        keys: RecordKeys,
        *,
        controller_id: str,
        record_id: str,
        salt: bytes,
        chunk_size: int = DEFAULT_CHUNK_SIZE,
    ) -> None:
        if len(salt) != SALT_BYTES or not MIN_CHUNK_SIZE <= chunk_size <= MAX_CHUNK_SIZE:
            raise _fail()
        self.header = _CONTENT_HEADER.pack(
            MAGIC, FORMAT_VERSION, KIND_CONTENT, SUITE_V1, keys.skid, keys.key_version,
            keys.commitment, salt, chunk_size,
        )
        self._bound = binding(controller_id, record_id, _CONTENT_FIELD)
        self._aead = _content_key(keys, salt, self._bound)
        self._chunk_size = chunk_size
        self._buffer: bytearray | memoryview = bytearray()
        self._index = 0
        self._header_sent = False
        self._done = False
        self.plaintext_length = 0
        self._hash = sha256()

    @property
    def plaintext_sha256(self) -> bytes:
        """SHA-256 of the plaintext fed so far (complete after :meth:`finalize`)."""
        return self._hash.digest()

    def _emit(self, chunk: bytes | bytearray | memoryview, final: bool) -> bytes:
        # AES-GCM reads the chunk in place (any buffer): no copy of the plaintext
        out = self._aead.encrypt(
            _chunk_nonce(self._index, final),
            chunk,
            _chunk_aad(self.header, self._bound, self._index, final),
        )
        self._index += 1
        return out

    def _prefix(self) -> bytes:
        if self._header_sent:
            return b""
        self._header_sent = True
        return self.header

    def update(self, data: bytes | bytearray | memoryview) -> bytes:
        """Add plaintext; return the ciphertext of every chunk now known not to be last.

        The last chunk seen is held back (it may be the final one). It is held as a view
        when ``data`` is immutable (``bytes``, or a read-only view of ``bytes``), and
        copied otherwise; whole chunks are encrypted straight from ``data``.
        """
        if self._done:
            raise _fail()
        view = memoryview(data).cast("B")
        self.plaintext_length += len(view)
        self._hash.update(view)
        parts = [self._prefix()]
        size = self._chunk_size
        held = self._buffer
        if held:
            if len(held) < size:  # top the held part up to a whole chunk
                if not isinstance(held, bytearray):
                    held = bytearray(held)
                take = size - len(held)
                held += view[:take]
                view = view[take:]
            if not view:  # nothing after it yet: it may still be the last chunk
                self._buffer = held
                return parts[0]
            parts.append(self._emit(held, final=False))
        start = 0
        while len(view) - start > size:
            parts.append(self._emit(view[start : start + size], final=False))
            start += size
        rest = view[start:]
        immutable = rest.readonly and isinstance(rest.obj, bytes)
        self._buffer = rest if immutable else bytearray(rest)
        out = [part for part in parts if part]
        if len(out) == 1:
            return out[0]
        return b"".join(out)

    def finalize(self) -> bytes:
        """Emit the final chunk (0..chunk_size bytes of plaintext, flagged final)."""
        if self._done:
            raise _fail()
        self._done = True
        out = self._prefix() + self._emit(self._buffer, final=True)
        self._buffer = bytearray()
        return out


def encrypt_content(
    keys: RecordKeys,
    chunks: Iterable[bytes],
    *,
    controller_id: str,
    record_id: str,
    salt: bytes,
    chunk_size: int = DEFAULT_CHUNK_SIZE,
) -> Iterator[bytes]:
    """Encrypt an iterable of plaintext pieces into a content envelope, lazily."""
    enc = ContentEncryptor(
        keys, controller_id=controller_id, record_id=record_id, salt=salt, chunk_size=chunk_size
    )
    for piece in chunks:
        out = enc.update(piece)
        if out:
            yield out
    yield enc.finalize()


@dataclass(frozen=True)
class ContentHeader:
    """The parsed, not yet authenticated, header of a content envelope."""

    skid: bytes
    key_version: int
    chunk_size: int


def parse_content_header(data: bytes) -> ContentHeader:
    """Parse the header at the start of a content envelope.

    :raises IntegrityError: if the bytes do not start with a v1 content header.
    """
    if len(data) < CONTENT_HEADER_BYTES:
        raise _fail()
    magic, version, kind, suite, skid, key_version, _c, _salt, chunk_size = (
        _CONTENT_HEADER.unpack_from(data)
    )
    if (
        magic != MAGIC
        or version != FORMAT_VERSION
        or kind != KIND_CONTENT
        or suite != SUITE_V1
        or not MIN_CHUNK_SIZE <= chunk_size <= MAX_CHUNK_SIZE
    ):
        raise _fail()
    return ContentHeader(skid=skid, key_version=key_version, chunk_size=chunk_size)


class ContentDecryptor:
    """Authenticates and decrypts a content envelope fed in pieces of any size.

    :meth:`update` returns plaintext of chunks already authenticated; :meth:`finalize`
    checks that the stream ended exactly after the chunk flagged final. Plaintext
    returned before :meth:`finalize` is authentic but may be a truncated prefix: a caller
    must treat content as complete only once :meth:`finalize` has returned.

    Every version of a record's document shares the record's content binding, so
    ``salt``, the one sealed in the record's meta when its current document was stored,
    says which version this must be: a header with any other salt (an earlier document,
    put back under the current one's name) is refused before any plaintext is returned.
    """

    def __init__(
        self, keys: RecordKeys, *, controller_id: str, record_id: str, salt: bytes | None = None
    ) -> None:
        self._keys = keys
        self._salt = salt
        self._bound = binding(controller_id, record_id, _CONTENT_FIELD)
        self._buffer = bytearray()
        self._header: bytes | None = None
        self._aead: AESGCM | None = None
        self._chunk_size = 0
        self._index = 0
        self._done = False
        self._hash = sha256()
        self.plaintext_length = 0

    @property
    def plaintext_sha256(self) -> bytes:
        """SHA-256 of the plaintext returned so far."""
        return self._hash.digest()

    def _start(self) -> None:
        head = parse_content_header(bytes(self._buffer[:CONTENT_HEADER_BYTES]))
        header = bytes(self._buffer[:CONTENT_HEADER_BYTES])
        _m, _v, _k, _s, _skid, _kv, commitment, salt, _cs = _CONTENT_HEADER.unpack(header)
        if (
            head.skid != self._keys.skid
            or head.key_version != self._keys.key_version
            or not hmac.compare_digest(commitment, self._keys.commitment)
            or (self._salt is not None and not hmac.compare_digest(salt, self._salt))
        ):
            raise _fail()
        self._header = header
        self._chunk_size = head.chunk_size
        self._aead = _content_key(self._keys, salt, self._bound)
        del self._buffer[:CONTENT_HEADER_BYTES]

    def _open(self, chunk: bytes | bytearray | memoryview, final: bool) -> bytes:
        if self._aead is None or self._header is None:
            raise _fail()
        try:
            out = self._aead.decrypt(
                _chunk_nonce(self._index, final),
                bytes(chunk),
                _chunk_aad(self._header, self._bound, self._index, final),
            )
        except InvalidTag:
            raise _fail() from None
        self._index += 1
        self._hash.update(out)
        self.plaintext_length += len(out)
        return out

    def update(self, data: bytes | bytearray | memoryview) -> bytes:
        """Feed ciphertext; return the plaintext of every chunk known not to be last.

        :raises IntegrityError: if the header or a chunk fails verification.
        """
        if self._done:
            raise _fail()
        self._buffer += data
        if self._header is None:
            if len(self._buffer) < CONTENT_HEADER_BYTES:
                return b""
            self._start()
        full = self._chunk_size + TAG_BYTES
        parts = []
        start = 0
        try:
            with memoryview(self._buffer) as view:
                while len(self._buffer) - start > full:
                    parts.append(self._open(view[start : start + full], final=False))
                    start += full
        except IntegrityError:
            self._done = True
            raise
        if start:
            del self._buffer[:start]
        return b"".join(parts)

    def finalize(self) -> bytes:
        """Verify and return the final chunk.

        :raises IntegrityError: if the stream was truncated, extended or altered.
        """
        if self._done:
            raise _fail()
        self._done = True
        if self._header is None:
            if len(self._buffer) < CONTENT_HEADER_BYTES:
                raise _fail()
            self._start()
        if not TAG_BYTES <= len(self._buffer) <= self._chunk_size + TAG_BYTES:
            raise _fail()
        out = self._open(self._buffer, final=True)
        self._buffer = bytearray()
        return out


def decrypt_content(
    keys: RecordKeys, envelope: Iterable[bytes], *, controller_id: str, record_id: str
) -> Iterator[bytes]:
    """Decrypt a content envelope given as an iterable of pieces, lazily.

    :raises IntegrityError: (while iterating) on any verification failure.
    """
    dec = ContentDecryptor(keys, controller_id=controller_id, record_id=record_id)
    for piece in envelope:
        out = dec.update(piece)
        if out:
            yield out
    last = dec.finalize()
    if last:
        yield last


# -- wrapped keys ------------------------------------------------------------------------


def wrap_key(
    wrapping_key: bytes,
    key: bytes,
    *,
    wrapping_key_version: int,
    context: bytes,
    nonce: bytes,
) -> bytes:
    """Wrap a data key under a controller key with AES-256-GCM, bound to ``context``.

    :param context: associated data naming what the key is (controller, key id, purpose).
    :raises IntegrityError: on a wrongly sized key or nonce.
    """
    if len(wrapping_key) != KEY_BYTES or len(nonce) != NONCE_BYTES:
        raise _fail()
    header = _WRAPPED_HEADER.pack(
        MAGIC, FORMAT_VERSION, KIND_WRAPPED_KEY, SUITE_V1, wrapping_key_version, nonce
    )
    return header + AESGCM(wrapping_key).encrypt(nonce, key, header + context)


def wrapped_key_version(wrapped: bytes) -> int:
    """The version of the controller key that wrapped ``wrapped``.

    :raises IntegrityError: if the bytes are not a v1 wrapped key.
    """
    if len(wrapped) < _WRAPPED_HEADER.size + TAG_BYTES:
        raise _fail()
    magic, version, kind, suite, key_version, _n = _WRAPPED_HEADER.unpack_from(wrapped)
    if (
        magic != MAGIC
        or version != FORMAT_VERSION
        or kind != KIND_WRAPPED_KEY
        or suite != SUITE_V1
    ):
        raise _fail()
    return int(key_version)


def unwrap_key(wrapping_key: bytes, wrapped: bytes, *, context: bytes) -> bytes:
    """Unwrap a key wrapped by :func:`wrap_key` under the same context.

    :raises IntegrityError: if the wrapped key is malformed, altered or moved.
    """
    wrapped_key_version(wrapped)
    _m, _v, _k, _s, _kv, nonce = _WRAPPED_HEADER.unpack_from(wrapped)
    header = wrapped[: _WRAPPED_HEADER.size]
    try:
        body = wrapped[_WRAPPED_HEADER.size :]
        return AESGCM(wrapping_key).decrypt(nonce, body, header + context)
    except (InvalidTag, ValueError):
        raise _fail() from None


__all__ = [
    "CONTENT_HEADER_BYTES",
    "DEFAULT_CHUNK_SIZE",
    "FIELD_HEADER_BYTES",
    "FORMAT_VERSION",
    "MAGIC",
    "ContentDecryptor",
    "ContentEncryptor",
    "ContentHeader",
    "FieldHeader",
    "RecordKeys",
    "binding",
    "canonical",
    "decrypt_content",
    "decrypt_field",
    "derive_record_keys",
    "encrypt_content",
    "encrypt_field",
    "encrypt_tagged_fields",
    "encrypted_content_length",
    "field_tag",
    "field_tags",
    "parse_content_header",
    "parse_field_header",
    "unwrap_key",
    "wrap_key",
    "wrapped_key_version",
]


class _NoncePool:
    """Random bytes of one thread of one process, handed out one nonce at a time."""

    __slots__ = ("data", "generation", "next")

    def __init__(self, data: bytes) -> None:
        self.data = data
        self.next = 0
        self.generation = _forks.generation()


class NonceSource:
    """Fresh random nonces of :data:`NONCE_BYTES`, never the same one twice.

    Random bytes are drawn 64 nonces at a time into a pool per thread (one system call
    instead of one per field). A forked child inherits its parent's pools; the fork
    generation makes it draw its own, so parent and child never share a nonce.
    """

    PER_DRAW = 64

    def __init__(self, random_bytes: Callable[[int], bytes] = os.urandom) -> None:
        self._random = random_bytes
        self._local = threading.local()

    def __call__(self) -> bytes:
        pool: _NoncePool | None = getattr(self._local, "pool", None)
        if (
            pool is None or pool.next >= len(pool.data)
            or pool.generation != _forks.generation()
        ):
            pool = _NoncePool(self._random(NONCE_BYTES * self.PER_DRAW))
            self._local.pool = pool
        start = pool.next
        pool.next = start + NONCE_BYTES
        return pool.data[start:pool.next]
