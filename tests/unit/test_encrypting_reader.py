"""The encrypting reader announces exactly the length it then yields, whatever the buffer."""

from __future__ import annotations

import io
from array import array
from typing import Any

import pytest

from mizaic_processor._content import EncryptingReader
from mizaic_processor._core import envelope as e
from mizaic_processor.errors import InvalidInputError

KEYS = e.derive_record_keys(
    bytes(32), skid=bytes(16), key_version=1, controller_id="c", record_id="r"
)


@pytest.mark.parametrize(
    "content",
    [
        b"x" * 1000,
        bytearray(b"y" * 1000),
        memoryview(b"z" * 1000),
        # items wider than a byte, and two dimensions: the length is in bytes, not items
        memoryview(array("I", range(1000))),
        memoryview(bytes(range(200)) * 20).cast("B", shape=[40, 100]),
    ],
    ids=["bytes", "bytearray", "view", "view of uint32", "2-d view"],
)
def test_the_announced_length_is_the_length_of_the_stream(content: object) -> None:
    encryptor = e.ContentEncryptor(KEYS, controller_id="c", record_id="r", salt=bytes(32),
                                   chunk_size=256)
    reader = EncryptingReader(encryptor, content, 256)  # type: ignore[arg-type]
    stream = reader.read()
    assert reader.encrypted_length == len(stream)
    plain = b"".join(e.decrypt_content(KEYS, [stream], controller_id="c", record_id="r"))
    assert plain == bytes(content)  # type: ignore[call-overload]


class _Pieces:
    """A binary stream that yields the given pieces, one per read."""

    def __init__(self, *pieces: object) -> None:
        self._pieces = list(pieces)

    def read(self, size: int = -1) -> object:
        return self._pieces.pop(0) if self._pieces else b""


def _stream_of(reader: EncryptingReader) -> bytes:
    return b"".join(e.decrypt_content(KEYS, [reader.read()], controller_id="c", record_id="r"))


def _encryptor() -> e.ContentEncryptor:
    return e.ContentEncryptor(KEYS, controller_id="c", record_id="r", salt=bytes(32),
                              chunk_size=256)


def test_a_stream_may_yield_views_that_are_not_contiguous() -> None:
    # memoryview(b)[::2] cannot be read in place (the encryptor casts it to bytes); it is
    # copied, so the document is exactly the bytes the views show
    whole = bytes(range(256)) * 8
    pieces = (memoryview(whole)[::2], memoryview(whole)[1::2], memoryview(whole)[::-1])
    reader = EncryptingReader(_encryptor(), _Pieces(*pieces), 256)  # type: ignore[arg-type]
    assert _stream_of(reader) == b"".join(bytes(p) for p in pieces)


def _released() -> memoryview:
    view = memoryview(b"abc")
    view.release()
    return view


@pytest.mark.parametrize(
    "piece", [_released(), "text", array("I", [1, 2]), 5],
    ids=["released view", "str", "array", "int"],
)
def test_a_stream_yielding_anything_but_bytes_is_invalid_input(piece: object) -> None:
    reader = EncryptingReader(_encryptor(), _Pieces(b"ok", piece), 256)  # type: ignore[arg-type]
    with pytest.raises(InvalidInputError, match="must yield bytes"):
        reader.read()


class _Seekable(io.BytesIO):
    """A stream whose seek() answers as configured."""

    def __init__(self, data: bytes, *, end: object = None, rewind_fails: bool = False) -> None:
        super().__init__(data)
        self._end = end
        self._rewind_fails = rewind_fails

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> Any:
        if whence == io.SEEK_END and self._end is not None:
            super().seek(offset, whence)
            return self._end
        if whence == io.SEEK_SET and self._rewind_fails:
            raise OSError("cannot rewind")
        return super().seek(offset, whence)


@pytest.mark.parametrize("end", [-5, 3.5, "10"], ids=["negative", "float", "str"])
def test_a_stream_that_reports_a_nonsense_length_is_read_to_its_end(end: object) -> None:
    data = bytes(range(256)) * 3
    reader = EncryptingReader(_encryptor(), _Seekable(data, end=end), 256)
    assert reader.encrypted_length is None
    assert _stream_of(reader) == data


def test_a_stream_that_cannot_be_rewound_after_measuring_is_refused() -> None:
    # it would be left at its end and stored as an empty document
    with pytest.raises(InvalidInputError, match="rewound"):
        EncryptingReader(_encryptor(), _Seekable(b"x" * 100, rewind_fails=True), 256)
