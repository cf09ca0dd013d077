"""Streaming document content through the envelope core, in bounded memory."""

from __future__ import annotations

import hmac
import io
import re
from collections.abc import Callable, Iterator
from typing import IO, Any

from mizaic_processor._core import envelope
from mizaic_processor.errors import IntegrityError, InvalidInputError

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
    if not isinstance(content, bytes | bytearray | memoryview):
        try:
            probe = content.read(0)  # type: ignore[attr-defined]
        except Exception:
            raise InvalidInputError("content stream cannot be read") from None
        if not isinstance(probe, bytes | bytearray):
            raise InvalidInputError("content must be a binary stream, not text")
    if (
        not isinstance(content_type, str)
        or not content_type.isascii()
        or _CONTENT_TYPE.fullmatch(content_type.lower()) is None
    ):
        raise InvalidInputError("a valid content_type (e.g. application/pdf) is required")
    return content_type.lower()


def _known_length(content: bytes | bytearray | memoryview | IO[bytes]) -> int | None:
    if isinstance(content, bytes | bytearray | memoryview):
        return len(content)
    try:
        if content.seekable():
            here = content.tell()
            end = content.seek(0, io.SEEK_END)
            content.seek(here)
            return end - here
    except (OSError, AttributeError, ValueError):
        return None
    return None


class EncryptingReader(io.RawIOBase):
    """A readable stream of the content envelope of ``source``, encrypted as it is read."""

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
        self._source: IO[bytes] = (
            io.BytesIO(bytes(source)) if isinstance(source, bytes | bytearray | memoryview)
            else source
        )
        self._read_size = chunk_size
        self._pending = bytearray()
        self._eof = False

    def readable(self) -> bool:
        return True

    def _fill(self, wanted: int) -> None:
        while len(self._pending) < wanted and not self._eof:
            piece = self._source.read(self._read_size)
            if not isinstance(piece, bytes | bytearray | memoryview):
                raise InvalidInputError("content stream must yield bytes")
            if piece:
                self._pending += self._encryptor.update(piece)
            else:
                self._pending += self._encryptor.finalize()
                self._eof = True

    def readinto(self, buffer: Any) -> int:
        view = memoryview(buffer).cast("B")
        self._fill(len(view))
        n = min(len(view), len(self._pending))
        view[:n] = self._pending[:n]
        del self._pending[:n]
        return n

    def read(self, size: int = -1) -> bytes:
        if size is None or size < 0:
            chunks: list[bytes] = []
            while True:
                self._fill(1 << 20)
                if not self._pending:
                    return b"".join(chunks)
                chunks.append(bytes(self._pending))
                self._pending.clear()
        self._fill(size)
        out = bytes(self._pending[:size])
        del self._pending[:size]
        return out


class ContentReader(io.RawIOBase):
    """A record's document, decrypted and verified as it is read.

    Iterate it for plaintext pieces, or call :meth:`read`. Use it as a context manager.
    When the last byte has been read, the stream's final chunk, its length and its
    SHA-256 against the one recorded at capture have all been verified; until then,
    what was read is authentic but may be incomplete.

    :raises IntegrityError: while reading, if the content fails verification.
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
        self._pending = bytearray()
        self._done = False
        self.verified = False

    def __repr__(self) -> str:
        return f"ContentReader(verified={self.verified})"

    def readable(self) -> bool:
        return True

    def _next_plain(self) -> bytes | None:
        try:
            return self._next_plain_unchecked()
        except IntegrityError:
            self._on_failure()
            raise

    def _next_plain_unchecked(self) -> bytes | None:
        while not self._done:
            piece = next(self._pieces, None)
            if piece is None:
                self._done = True
                out = self._decryptor.finalize()
                self._check_end()
                return out
            out = self._decryptor.update(piece)
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
            self._pending.clear()
            yield first
        while True:
            out = self._next_plain()
            if out is None:
                return
            if out:
                yield out

    def readinto(self, buffer: Any) -> int:
        view = memoryview(buffer).cast("B")
        while not self._pending:
            out = self._next_plain()
            if out is None:
                return 0
            self._pending += out
        n = min(len(view), len(self._pending))
        view[:n] = self._pending[:n]
        del self._pending[:n]
        return n

    def read(self, size: int = -1) -> bytes:
        if size is None or size < 0:
            return b"".join(list(self))
        buf = bytearray(size)
        n = self.readinto(buf)
        return bytes(buf[:n])

    def close(self) -> None:
        close = getattr(self._pieces, "close", None)
        if callable(close):
            close()
        super().close()
