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


def test_a_decryptor_given_the_sealed_salt_refuses_another_version_before_any_plaintext(
) -> None:
    keys = e.derive_record_keys(
        bytes(32), skid=bytes(16), key_version=1, controller_id="c", record_id="r"
    )

    def stored(salt: bytes) -> bytes:
        return b"".join(e.encrypt_content(
            keys, [bytes(range(48))], controller_id="c", record_id="r", salt=salt, chunk_size=16
        ))

    current, earlier = bytes(32), bytes([7]) * 32
    for expected, ok in ((current, True), (None, True), (earlier, False)):
        dec = e.ContentDecryptor(keys, controller_id="c", record_id="r", salt=expected)
        if ok:
            assert dec.update(stored(current)) + dec.finalize() == bytes(range(48))
        else:  # refused at the header: not even the first chunk comes out
            with pytest.raises(IntegrityError):
                dec.update(stored(current)[: e.CONTENT_HEADER_BYTES + 16 + 16])
    # without a salt to compare (a document stored before the salt was sealed) the other
    # version still decrypts: that is what the sealed salt closes
    dec = e.ContentDecryptor(keys, controller_id="c", record_id="r")
    assert dec.update(stored(earlier)) + dec.finalize() == bytes(range(48))
