"""Key Vault requests give up after the keyring's timeouts, not the SDK transport's 300 s.

A vault that accepts the connection and never answers (a loopback port that only listens)
must fail a wrap with ``KeyManagementError`` after about ``timeout``; the defaults are the
documented 20 s connect / 60 s read, on both the key client and the per-key clients.
"""

from __future__ import annotations

import socket
import time
from collections.abc import Iterator
from typing import Any

import pytest

from mizaic_processor import InvalidInputError, KeyManagementError, KeyVaultKeyring

KEY = bytes(range(32))


class _NoToken:
    """A credential that never yields a token (the vault is never reached anyway)."""

    def get_token(self, *scopes: str, **kwargs: Any) -> Any:
        raise RuntimeError("no token in this test")


@pytest.fixture
def silent_vault() -> Iterator[str]:
    """An https URL on a loopback port that accepts connections and never answers."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen(16)
        yield f"https://127.0.0.1:{sock.getsockname()[1]}"


def test_a_vault_that_never_answers_fails_the_wrap_after_the_timeout(
    silent_vault: str,
) -> None:
    # Before the keyring passed its timeouts on, this call waited the transport's 300 s.
    ring = KeyVaultKeyring(
        silent_vault, credential=_NoToken(), timeout=1.0, read_timeout=1.0, retry_total=0
    )
    started = time.monotonic()
    with pytest.raises(KeyManagementError):
        ring.wrap_key(f"{silent_vault}/keys/kek/v1", KEY)
    elapsed = time.monotonic() - started
    assert 0.9 <= elapsed < 15.0


def test_the_keyring_uses_the_documented_timeouts_on_every_client() -> None:
    # 20 s connect, 60 s read (docs/configuration.md): too long to wait for in a test, so
    # the transports the keyring's requests go through are inspected.
    ring = KeyVaultKeyring("https://mizaic-test.vault.azure.net", credential=_NoToken())
    key_client = ring._key_client
    assert key_client is not None
    crypto_client = ring._client("https://mizaic-test.vault.azure.net/keys/kek/v1")
    for client in (key_client, crypto_client):
        config = client._client._client._pipeline._transport.connection_config
        assert (config.timeout, config.read_timeout) == (20.0, 60.0)


@pytest.mark.parametrize(
    "options",
    [
        {"timeout": 0},
        {"timeout": -1.0},
        {"read_timeout": float("nan")},
        {"read_timeout": "60"},
        {"timeout": True},
        {"retry_total": -1},
        {"retry_total": 21},
        {"retry_total": 2.5},
    ],
)
def test_out_of_range_vault_options_are_refused_before_any_request(
    options: dict[str, Any],
) -> None:
    with pytest.raises(InvalidInputError):
        KeyVaultKeyring(
            "https://mizaic-test.vault.azure.net", credential=_NoToken(), **options
        )
