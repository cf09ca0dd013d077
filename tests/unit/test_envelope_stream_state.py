"""A content decryptor that failed once refuses further use with the integrity error."""

from __future__ import annotations

import pytest

from mizaic_processor._core import envelope as e
from mizaic_processor.errors import IntegrityError


def test_decryptor_that_failed_refuses_further_input_with_integrity_error() -> None:
    keys = e.derive_record_keys(
        bytes(32), skid=bytes(16), key_version=1, controller_id="c", record_id="r"
    )
    stream = b"".join(
        e.encrypt_content(
            keys, [bytes(48)], controller_id="c", record_id="r", salt=bytes(32), chunk_size=16
        )
    )
    bad = bytearray(stream)
    bad[e.CONTENT_HEADER_BYTES] ^= 1
    dec = e.ContentDecryptor(keys, controller_id="c", record_id="r")
    with pytest.raises(IntegrityError):
        dec.update(bytes(bad))
    with pytest.raises(IntegrityError):
        dec.update(b"x")
    with pytest.raises(IntegrityError):
        dec.finalize()
