"""LocalKeyring refuses what is not a path, a key id, a key or a wrapped key with the
library's own errors (they escaped as TypeError, AttributeError or ValueError)."""

from __future__ import annotations

from pathlib import Path

import pytest

from mizaic_processor import InvalidInputError, KeyManagementError, LocalKeyring

KEY = bytes(range(32))


@pytest.fixture
def ring() -> LocalKeyring:
    ring = LocalKeyring.generate()
    ring.create_key("kek")
    return ring


@pytest.mark.parametrize("path", [None, 5, b"/tmp/keyring.json"], ids=["none", "int", "bytes"])
def test_save_refuses_what_is_not_a_path(ring: LocalKeyring, path: object) -> None:
    with pytest.raises(InvalidInputError):
        ring.save(path)  # type: ignore[arg-type]


@pytest.mark.parametrize("name", ["key\x00ring.json", "key\ud800ring.json"],
                         ids=["nul", "lone-surrogate"])
def test_save_to_a_path_the_system_cannot_take_is_a_key_management_error(
    ring: LocalKeyring, tmp_path: Path, name: str
) -> None:
    with pytest.raises(KeyManagementError):
        ring.save(str(tmp_path) + "/" + name)
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("key_id", [5, None, b"local:kek/1"], ids=["int", "none", "bytes"])
def test_wrap_refuses_a_key_id_that_is_not_a_string(ring: LocalKeyring, key_id: object) -> None:
    with pytest.raises(KeyManagementError):
        ring.wrap_key(key_id, KEY)  # type: ignore[arg-type]


@pytest.mark.parametrize("key", ["k" * 32, None, bytearray(KEY)], ids=["str", "none", "bytearray"])
def test_wrap_refuses_a_key_that_is_not_bytes(ring: LocalKeyring, key: object) -> None:
    with pytest.raises(KeyManagementError):
        ring.wrap_key("local:kek/1", key)  # type: ignore[arg-type]


@pytest.mark.parametrize("wrapped", ["x", None, b"local:kek/1"], ids=["str", "none", "bytes"])
def test_unwrap_refuses_what_is_not_a_wrapped_key(ring: LocalKeyring, wrapped: object) -> None:
    with pytest.raises(KeyManagementError):
        ring.unwrap_key(wrapped)  # type: ignore[arg-type]


def test_a_well_formed_wrap_still_round_trips(ring: LocalKeyring) -> None:
    assert ring.unwrap_key(ring.wrap_key("local:kek/1", KEY)) == KEY


def test_a_keyring_file_nested_past_the_recursion_limit_is_a_key_management_error(
    tmp_path: Path,
) -> None:
    path = tmp_path / "keyring.json"
    path.write_text("[" * 100_000 + "]" * 100_000)
    with pytest.raises(KeyManagementError):
        LocalKeyring.from_file(path)
