"""Streaming document content through the envelope core, in bounded memory."""

from __future__ import annotations

import collections
import hmac
import io
import operator
import re
from collections.abc import Callable, Iterator
from typing import IO, Any

from mizaic_processor._core import envelope
from mizaic_processor.errors import IntegrityError, InvalidInputError

# ciphertext bytes handed to the decryptor at a time (pieces from storage are larger)
_FEED = 1024 * 1024

_CONTENT_TYPE = re.compile(r"[a-z0-9][a-z0-9!#$&^_.+-]{0,63}/[a-z0-9][a-z0-9!#$&^_.+-]{0,63}")


def check_content(content: object, content_type: object) -> str | None:
    """Validate content and its media type before any I/O.

    :raises InvalidInputError: if content is neither bytes nor a readable binary stream,
        or the media type is missing or malformed.
    """
    if content is None:
        if content_type is not None:
            raise InvalidInputError("content_type given without content")
        return None
    if isinstance(content, str):
        raise InvalidInputError("content must be bytes or a binary stream, not str")
    if not isinstance(content, bytes | bytearray | memoryview) and not callable(
        getattr(content, "read", None)
    ):
        raise InvalidInputError("content must be bytes or a binary stream")
    if isinstance(content, io.TextIOBase):
        raise InvalidInputError("content must be a binary stream, not text")
    if isinstance(content, memoryview) and _released(content):
        raise InvalidInputError("content memoryview has been released")
    if not isinstance(content, bytes | bytearray | memoryview):
        try:
            probe = content.read(0)  # type: ignore[attr-defined]
        except Exception:
            raise InvalidInputError("content stream cannot be read") from None
        if not isinstance(probe, bytes | bytearray):
            raise InvalidInputError("content must be a binary stream, not text")
        # measured now (and again when read): one that cannot be rewound is refused here
        _known_length(content)  # type: ignore[arg-type]
    if (
        not isinstance(content_type, str)
        or not content_type.isascii()
        or _CONTENT_TYPE.fullmatch(content_type.lower()) is None
    ):
        raise InvalidInputError("a valid content_type (e.g. application/pdf) is required")
    return content_type.lower()


def _released(view: memoryview) -> bool:
    try:
        view.nbytes  # noqa: B018 - any use of a released view raises ValueError
    except ValueError:
        return True
    return False


def _piece(piece: object) -> bytes | bytearray | memoryview:
    """A piece a content stream yielded, as a buffer the encryptor can read in place.

    A view that is not C-contiguous (``memoryview(b)[::2]``) is copied to its bytes.

    :raises InvalidInputError: if the piece is not bytes-like, or is a released view.
    """
    if isinstance(piece, bytes | bytearray):
        return piece
    if isinstance(piece, memoryview) and not _released(piece):
        return piece if piece.c_contiguous else piece.tobytes()
    raise InvalidInputError("content stream must yield bytes")


def _known_length(content: bytes | bytearray | memoryview | IO[bytes]) -> int | None:
    if isinstance(content, memoryview):
        return content.nbytes  # bytes, not items: a view may have wider items or 2 dims
    if isinstance(content, bytes | bytearray):
        return len(content)
    try:
        if not content.seekable():
            return None
        here = content.tell()
        end = content.seek(0, io.SEEK_END)
    except Exception:  # the caller's stream: any failure means "length unknown"
        return None
    try:
        back = content.seek(here)
        if back is None:  # some file-likes' seek() returns nothing: ask where it is
            back = content.tell()
    except Exception:
        back = None
    if back != here:
        # left at the end, the stream would read as an empty document
        raise InvalidInputError("content stream could not be rewound after measuring it")
    if type(here) is not int or type(end) is not int or end < here:
        return None  # a stream that reports nonsense: read it to its end instead
    return end - here


class _BytesSource:
    """Reads an immutable ``bytes`` object as zero-copy views (no copy of the content)."""

    def __init__(self, data: bytes) -> None:
        self._view = memoryview(data)
        self._pos = 0

    def read(self, size: int = -1) -> memoryview:
        end = len(self._view) if size is None or size < 0 else self._pos + size
        out = self._view[self._pos : end]
        self._pos += len(out)
        return out


class EncryptingReader(io.RawIOBase):
    """A readable stream of the content envelope of ``source``, encrypted as it is read.

    Ciphertext is kept as the pieces the encryptor returned and joined once per
    :meth:`read` (no copy when a read is exactly one piece); memory stays about one read
    plus one chunk.
    """

    def __init__(
        self,
        encryptor: envelope.ContentEncryptor,
        source: bytes | bytearray | memoryview | IO[bytes],
        chunk_size: int,
    ) -> None:
        super().__init__()
        self._encryptor = encryptor
        length = _known_length(source)
        self.encrypted_length = (
            None if length is None else envelope.encrypted_content_length(length, chunk_size)
        )
        self._source: IO[bytes] | _BytesSource
        if isinstance(source, bytes):
            self._source = _BytesSource(source)
        elif isinstance(source, bytearray | memoryview):
            self._source = io.BytesIO(bytes(source))  # a snapshot of mutable content
        else:
            self._source = source
        self._read_size = chunk_size
        self._pieces: collections.deque[bytes | memoryview] = collections.deque()
        self._buffered = 0
        self._eof = False

    def readable(self) -> bool:
        return True

    def _fill(self, wanted: int) -> None:
        while self._buffered < wanted and not self._eof:
            piece = _piece(self._source.read(self._read_size))
            if piece:
                out = self._encryptor.update(piece)
            else:
                out = self._encryptor.finalize()
                self._eof = True
            if out:
                self._pieces.append(out)
                self._buffered += len(out)

    def _take(self, size: int) -> list[bytes | memoryview]:
        """Remove and return the first ``size`` buffered bytes (or all there are)."""
        parts: list[bytes | memoryview] = []
        need = size
        while need and self._pieces:
            head = self._pieces[0]
            if len(head) <= need:
                parts.append(self._pieces.popleft())
                need -= len(head)
            else:
                view = head if isinstance(head, memoryview) else memoryview(head)
                parts.append(view[:need])
                self._pieces[0] = view[need:]
                need = 0
        self._buffered -= size - need
        return parts

    def readinto(self, buffer: Any) -> int:
        view = memoryview(buffer).cast("B")
        self._fill(len(view))
        n = 0
        for part in self._take(len(view)):
            view[n : n + len(part)] = part
            n += len(part)
        return n

    def read(self, size: int | None = -1) -> bytes:
        if size is None or size < 0:
            chunks: list[bytes | memoryview] = []
            while True:
                self._fill(1 << 20)
                if not self._pieces:
                    return b"".join(chunks)
                chunks.extend(self._take(self._buffered))
        self._fill(size)
        parts = self._take(size)
        if len(parts) == 1 and type(parts[0]) is bytes:
            return parts[0]
        return b"".join(parts)


class ContentReader(io.RawIOBase):
    """A record's document, decrypted and verified as it is read.

    Iterate it for plaintext pieces, or call :meth:`read`. Use it as a context manager.
    When the last byte has been read, the stream's final chunk, its length and its
    SHA-256 against the one recorded at capture have all been verified; until then,
    what was read is authentic but may be incomplete.

    :raises IntegrityError: while reading, if the content fails verification.
    :raises InvalidInputError: on a read after :meth:`close` (also a ``ValueError``, as
        ``io`` streams raise), or a ``size`` or buffer of the wrong kind.
    """

    def __init__(
        self,
        pieces: Iterator[bytes],
        decryptor: envelope.ContentDecryptor,
        *,
        expected_length: object,
        expected_sha256: object,
        on_integrity_failure: Callable[[], None] = lambda: None,
    ) -> None:
        super().__init__()
        self._on_failure = on_integrity_failure
        self._pieces = pieces
        self._decryptor = decryptor
        self._expected_length = expected_length
        self._expected_sha256 = expected_sha256
        self._pending: bytes | memoryview = b""  # plaintext decrypted but not yet read
        self._cipher = memoryview(b"")  # ciphertext fetched but not yet decrypted
        self._done = False
        self.verified = False

    def __repr__(self) -> str:
        return f"ContentReader(verified={self.verified})"

    def readable(self) -> bool:
        return True

    def _check_open(self) -> None:
        # Reading past close() must not look like a stream cut short: that is an integrity
        # failure, and would send the controller an automatic breach notice.
        if self.closed:
            raise InvalidInputError("the content reader is closed")

    def __enter__(self) -> ContentReader:
        self._check_open()
        return self

    def _next_plain(self) -> bytes | None:
        self._check_open()
        try:
            return self._next_plain_unchecked()
        except IntegrityError:
            self._on_failure()
            raise

    def _next_plain_unchecked(self) -> bytes | None:
        while not self._done:
            if not self._cipher:
                # drop the spent piece (an empty view still holds it) before fetching more
                self._cipher = memoryview(b"")
                piece = next(self._pieces, None)
                if piece is None:
                    self._done = True
                    out = self._decryptor.finalize()
                    self._check_end()
                    return out
                self._cipher = memoryview(piece)
            # Feed large pieces in slices: the decryptor's buffer and output stay small.
            feed, self._cipher = self._cipher[:_FEED], self._cipher[_FEED:]
            out = self._decryptor.update(feed)
            if out:
                return out
        return None

    def _check_end(self) -> None:
        digest = self._decryptor.plaintext_sha256.hex()
        if (
            self._decryptor.plaintext_length != self._expected_length
            or not isinstance(self._expected_sha256, str)
            or not hmac.compare_digest(digest, self._expected_sha256)
        ):
            raise IntegrityError("stored data failed integrity verification")
        self.verified = True

    def __iter__(self) -> Iterator[bytes]:
        if self._pending:
            first = bytes(self._pending)
            self._pending = b""
            yield first
        while True:
            out = self._next_plain()
            if out is None:
                return
            if out:
                yield out

    def _fill(self) -> bool:
        """Make plaintext pending unless the stream has ended; ``False`` at the end."""
        while not self._pending:
            out = self._next_plain()
            if out is None:
                return False
            self._pending = out
        return True

    def readinto(self, buffer: Any) -> int:
        self._check_open()
        try:
            view = memoryview(buffer).cast("B")
        except (TypeError, ValueError):  # not a buffer, released, or not contiguous
            raise InvalidInputError("readinto needs a writable, contiguous buffer") from None
        if view.readonly:
            raise InvalidInputError("readinto needs a writable, contiguous buffer")
        if not view or not self._fill():
            return 0
        pending = self._pending
        n = min(len(view), len(pending))
        view[:n] = pending[:n]
        self._pending = b"" if n == len(pending) else memoryview(pending)[n:]
        return n

    def read(self, size: int | None = -1) -> bytes:
        self._check_open()
        if size is not None:  # an int, or anything with __index__; not True/False
            if isinstance(size, bool) or not hasattr(size, "__index__"):
                raise InvalidInputError("size must be an int or None")
            size = operator.index(size)
        if size is None or size < 0:
            return b"".join(list(self))
        if size == 0 or not self._fill():
            return b""
        pending = self._pending
        if size >= len(pending):
            self._pending = b""
            return pending if type(pending) is bytes else bytes(pending)
        view = memoryview(pending)
        self._pending = view[size:]
        return bytes(view[:size])

    def close(self) -> None:
        close = getattr(self._pieces, "close", None)
        if callable(close):
            close()
        self._cipher = memoryview(b"")
        self._pending = b""
        super().close()
