"""The encrypting reader announces exactly the length it then yields, whatever the buffer."""

from __future__ import annotations

from array import array

import pytest

from mizaic_processor._content import EncryptingReader
from mizaic_processor._core import envelope as e

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
