"""Key derivations that are not envelopes: blind index, controller-level data keys.

Pure. See DESIGN.md §3 for the hierarchy.
"""

from __future__ import annotations

import hmac
from hashlib import sha256

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from mizaic_processor._core.envelope import canonical
from mizaic_processor._core.ids import b32

__all__ = ["audit_key", "blind_index", "subject_key_context"]


def blind_index(index_key: bytes, controller_id: str, kind: str, normalised: str) -> str:
    """The keyed blind index of a normalised subject identifier.

    HMAC-SHA256 under the controller's own index key, so the same NHS number under two
    controllers gives unlinkable values; bound to the controller id and identifier kind as
    well. An NHS number has about 30 bits of entropy: the index is only as safe as the
    index key, which is never stored unwrapped.
    """
    message = b"mizaic/v1/blind-index" + canonical(controller_id, kind, normalised)
    return b32(hmac.new(index_key, message, sha256).digest())


def audit_key(controller_key: bytes, controller_id: str) -> bytes:
    """The key that seals audit checkpoints (HMAC-SHA256); it decrypts nothing."""
    return HKDF(
        algorithm=hashes.SHA256(),
        length=32,
        salt=None,
        info=b"mizaic/v1/audit-checkpoint" + canonical(controller_id),
    ).derive(controller_key)


def subject_key_context(
    controller_id: str, skid: str, key_version: int, *, restricted: bool = False
) -> bytes:
    """Associated data binding a wrapped subject key to its controller and key id, and
    to the subject's restriction state (so flipping it in storage breaks the unwrap)."""
    return b"mizaic/v1/subject-key" + canonical(
        controller_id, skid, str(key_version), "restricted" if restricted else "open"
    )


