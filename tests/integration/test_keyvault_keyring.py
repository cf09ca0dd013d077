"""Keyrings as a processor's KEK store, against a real Azurite.

``KeyVaultKeyring.offline()`` wraps through ``CryptographyClient.from_jwk`` (the Key Vault
code path without a vault); ``LocalKeyring`` is saved to and reloaded from a file. The data
is readable only through the keyring that holds the controller's KEK.
"""

from __future__ import annotations

import base64
import contextlib
import json
import os
import stat
import threading
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from azure.storage.blob import BlobServiceClient, ContainerClient

from mizaic_processor import (
    Actor,
    IntegrityError,
    KeyManagementError,
    KeyVaultKeyring,
    LocalKeyring,
    NHSNumber,
    Processor,
    RecordRef,
    WrappedKey,
)
from mizaic_processor.keyring import Keyring
from mizaic_processor.testing import AzuriteServer

OPERATOR = Actor.processor_operator("ops@mizaic.example")
SERVICE = Actor.service("svc-epr")
NHS = "9434765919"
KEY = bytes(range(32))


def new_controller_id() -> str:
    return "t" + uuid.uuid4().hex[:10]


@contextlib.contextmanager
def thread_exceptions() -> Iterator[list[str]]:
    """Collect exceptions that escape background threads (the audit writer) meanwhile."""
    caught: list[str] = []
    previous = threading.excepthook

    def hook(args: threading.ExceptHookArgs) -> None:
        caught.append(f"{args.thread.name if args.thread else '?'}: {args.exc_type.__name__}")

    threading.excepthook = hook
    try:
        yield caught
    finally:
        threading.excepthook = previous


def connect(azurite: AzuriteServer, keyring: Keyring) -> Processor:
    return Processor.from_connection_string(
        azurite.connection_string, region="uksouth", keyring=keyring, retry_total=1
    )


def write_some(proc: Processor) -> tuple[str, RecordRef]:
    cid = new_controller_id()
    proc.register_controller(cid, name="Test Trust", actor=OPERATOR)
    ref = proc.tenant(cid, actor=SERVICE).create_record(
        NHSNumber(NHS), category="adult", fields={"dx": "asthma"}, content=b"document",
        content_type="application/pdf",
    )
    return cid, ref


def read_back(proc: Processor, cid: str, ref: RecordRef) -> tuple[object, bytes]:
    scope = proc.tenant(cid, actor=SERVICE)
    with scope.open_content(ref.record_id) as reader:
        content = reader.read()
    return scope.get_record(ref.record_id).fields, content


@pytest.fixture
def raw_service(azurite: AzuriteServer) -> Iterator[BlobServiceClient]:
    with BlobServiceClient.from_connection_string(azurite.connection_string) as service:
        yield service


def controller_keys_doc(raw: ContainerClient) -> dict:
    return json.loads(raw.download_blob("keys/controller.json").readall())


# -- KeyVaultKeyring.offline() -------------------------------------------------------------------


@pytest.fixture(scope="module")
def vault() -> KeyVaultKeyring:
    return KeyVaultKeyring.offline()


def test_an_offline_key_vault_keyring_backs_a_processor(
    azurite: AzuriteServer, vault: KeyVaultKeyring, raw_service: BlobServiceClient
) -> None:
    with connect(azurite, vault) as proc:
        cid, ref = write_some(proc)
        assert read_back(proc, cid, ref) == ({"dx": "asthma"}, b"document")
    # A second processor has no cached keys: it must unwrap through the keyring again.
    with connect(azurite, vault) as again:
        assert read_back(again, cid, ref) == ({"dx": "asthma"}, b"document")

    doc = controller_keys_doc(raw_service.get_container_client(f"mzc-{cid}"))
    (entry,) = doc["versions"].values()
    wrapped = WrappedKey.from_json(entry["wrapped"])
    assert wrapped.algorithm == "RSA-OAEP-256"
    assert wrapped.key_id.startswith(f"https://offline.vault.invalid/keys/mizaic-{cid}/")
    assert len(wrapped.ciphertext) == 256  # RSA-2048


def test_key_vault_wrapped_keys_name_their_jwa_algorithm(vault: KeyVaultKeyring) -> None:
    kid = vault.create_key(f"k-{uuid.uuid4().hex[:12]}")
    assert vault.wrap_key(kid, KEY).algorithm == "RSA-OAEP-256"


def test_key_vault_wrap_and_unwrap_round_trip(vault: KeyVaultKeyring) -> None:
    kid = vault.create_key(f"k-{uuid.uuid4().hex[:12]}")
    wrapped = vault.wrap_key(kid, KEY)
    assert wrapped.key_id == kid
    assert wrapped.ciphertext != KEY
    assert vault.wrap_key(kid, KEY).ciphertext != wrapped.ciphertext  # OAEP is randomised
    assert vault.unwrap_key(wrapped) == KEY
    assert vault.unwrap_key(WrappedKey.from_json(wrapped.to_json())) == KEY


@pytest.mark.parametrize("where", [0, 100, -1])
def test_key_vault_unwrap_of_a_tampered_wrapped_key_is_a_key_management_error(
    vault: KeyVaultKeyring, where: int
) -> None:
    kid = vault.create_key(f"k-{uuid.uuid4().hex[:12]}")
    wrapped = vault.wrap_key(kid, KEY)
    flipped = bytearray(wrapped.ciphertext)
    flipped[where] ^= 0x01
    with pytest.raises(KeyManagementError):
        vault.unwrap_key(WrappedKey(wrapped.key_id, wrapped.algorithm, bytes(flipped)))


def test_key_vault_refuses_truncated_unknown_and_foreign_wrapped_keys(
    vault: KeyVaultKeyring,
) -> None:
    kid = vault.create_key(f"k-{uuid.uuid4().hex[:12]}")
    other = vault.create_key(f"k-{uuid.uuid4().hex[:12]}")
    wrapped = vault.wrap_key(kid, KEY)
    bad = [
        WrappedKey(kid, wrapped.algorithm, wrapped.ciphertext[:-1]),
        WrappedKey(kid, wrapped.algorithm, b""),
        WrappedKey(kid, "RSA1_5", wrapped.ciphertext),
        WrappedKey(kid, "A256KW", wrapped.ciphertext),
        WrappedKey(kid + "x", wrapped.algorithm, wrapped.ciphertext),
        WrappedKey("https://offline.vault.invalid/keys/nope/v1", wrapped.algorithm,
                   wrapped.ciphertext),
        WrappedKey(other, wrapped.algorithm, wrapped.ciphertext),  # wrapped under another KEK
    ]
    for item in bad:
        with pytest.raises(KeyManagementError):
            vault.unwrap_key(item)
    with pytest.raises(KeyManagementError):
        vault.wrap_key("https://offline.vault.invalid/keys/nope/v1", KEY)


def test_key_vault_keys_are_created_once_and_rotated_to_new_versions(
    vault: KeyVaultKeyring,
) -> None:
    name = f"k-{uuid.uuid4().hex[:12]}"
    v1 = vault.create_key(name)
    with pytest.raises(KeyManagementError):
        vault.create_key(name)
    with pytest.raises(KeyManagementError):
        vault.rotate_key(f"never-{uuid.uuid4().hex[:8]}")
    v2 = vault.rotate_key(name)
    assert v2 != v1
    w1, w2 = vault.wrap_key(v1, KEY), vault.wrap_key(v2, KEY)
    assert (vault.unwrap_key(w1), vault.unwrap_key(w2)) == (KEY, KEY)
    with pytest.raises(KeyManagementError):
        vault.unwrap_key(WrappedKey(v2, w1.algorithm, w1.ciphertext))


def test_a_tampered_wrapped_controller_key_in_storage_is_refused(
    azurite: AzuriteServer, vault: KeyVaultKeyring, raw_service: BlobServiceClient
) -> None:
    with connect(azurite, vault) as proc:
        cid, ref = write_some(proc)
    raw = raw_service.get_container_client(f"mzc-{cid}")
    doc = controller_keys_doc(raw)
    entry = doc["versions"]["1"]["wrapped"]
    ciphertext = bytearray(base64.b64decode(entry["ciphertext"]))
    ciphertext[7] ^= 0x01
    entry["ciphertext"] = base64.b64encode(bytes(ciphertext)).decode()
    raw.upload_blob("keys/controller.json", json.dumps(doc).encode(), overwrite=True)

    with connect(azurite, vault) as fresh, pytest.raises(KeyManagementError):
        read_back(fresh, cid, ref)


# -- LocalKeyring ----------------------------------------------------------------------------------


def test_local_keyring_save_and_from_file_round_trip_keeps_the_data_readable(
    azurite: AzuriteServer, tmp_path: Path
) -> None:
    ring = LocalKeyring.generate()
    path = tmp_path / "keyring.json"
    with connect(azurite, ring) as proc:
        cid, ref = write_some(proc)
    ring.save(path)
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    assert not (tmp_path / "keyring.json.tmp").exists()

    reloaded = LocalKeyring.from_file(path)
    assert repr(reloaded) == repr(ring) == "LocalKeyring(keys=1)"
    with connect(azurite, reloaded) as proc:
        assert read_back(proc, cid, ref) == ({"dx": "asthma"}, b"document")

    # Saving again over an existing file replaces it, and it still loads.
    reloaded.save(path)
    with connect(azurite, LocalKeyring.from_file(path)) as proc:
        assert read_back(proc, cid, ref) == ({"dx": "asthma"}, b"document")


def test_local_keyring_wrap_round_trip_and_tamper(tmp_path: Path) -> None:
    ring = LocalKeyring.generate()
    kid = ring.create_key("k1")
    wrapped = ring.wrap_key(kid, KEY)
    assert ring.unwrap_key(wrapped) == KEY
    flipped = bytearray(wrapped.ciphertext)
    flipped[3] ^= 0x01
    for bad in (
        WrappedKey(kid, wrapped.algorithm, bytes(flipped)),
        WrappedKey(kid, wrapped.algorithm, wrapped.ciphertext[:-8]),
        WrappedKey(kid, "RSA-OAEP-256", wrapped.ciphertext),
        WrappedKey("local:k2/1", wrapped.algorithm, wrapped.ciphertext),
        WrappedKey("local:k1/2", wrapped.algorithm, wrapped.ciphertext),
        WrappedKey("../k1/1", wrapped.algorithm, wrapped.ciphertext),
    ):
        with pytest.raises(KeyManagementError):
            ring.unwrap_key(bad)
    v2 = ring.rotate_key("k1")
    assert v2 == "local:k1/2"
    assert ring.unwrap_key(wrapped) == KEY  # old versions stay usable


@pytest.mark.parametrize(
    "content",
    [None, "", "not json", "[]", '{"format": "mizaic.local-keyring", "v": 2, "keys": {}}',
     '{"format": "mizaic.local-keyring", "v": 1, "keys": {"k": ["AAAA"]}}',
     '{"format": "mizaic.local-keyring", "v": 1, "keys": {"bad name": []}}'],
)
def test_local_keyring_from_a_missing_or_malformed_file_is_a_key_management_error(
    tmp_path: Path, content: str | None
) -> None:
    path = tmp_path / "keyring.json"
    if content is not None:
        path.write_text(content)
    with pytest.raises(KeyManagementError):
        LocalKeyring.from_file(path)


@pytest.mark.parametrize("same_names", [False, True], ids=["empty", "same-key-names"])
def test_a_processor_with_another_local_keyring_cannot_read_the_controller_data(
    azurite: AzuriteServer, same_names: bool
) -> None:
    with connect(azurite, LocalKeyring.generate()) as proc:
        cid, ref = write_some(proc)
    stranger = LocalKeyring.generate()
    if same_names:  # a KEK with the very same name and version id, but other key material
        assert stranger.create_key(f"mizaic-{cid}") == f"local:mizaic-{cid}/1"
    with connect(azurite, stranger) as other:
        scope = other.tenant(cid, actor=SERVICE)
        with pytest.raises((KeyManagementError, IntegrityError)):
            scope.get_record(ref.record_id)
        with pytest.raises((KeyManagementError, IntegrityError)):
            scope.open_content(ref.record_id)
        with pytest.raises((KeyManagementError, IntegrityError)):
            list(scope.list_records(NHSNumber(NHS)))


def test_the_same_data_is_unreadable_through_an_offline_vault_that_did_not_wrap_it(
    azurite: AzuriteServer,
) -> None:
    with connect(azurite, KeyVaultKeyring.offline()) as proc:
        cid, ref = write_some(proc)
    with (
        connect(azurite, KeyVaultKeyring.offline()) as other,
        pytest.raises((KeyManagementError, IntegrityError)),
    ):
        other.tenant(cid, actor=SERVICE).get_record(ref.record_id)


def test_closing_a_processor_that_could_not_unwrap_the_keys_raises_nothing_in_a_thread(
    azurite: AzuriteServer,
) -> None:
    with connect(azurite, LocalKeyring.generate()) as proc:
        cid, ref = write_some(proc)
    with thread_exceptions() as caught:
        other = connect(azurite, LocalKeyring.generate())
        with pytest.raises(KeyManagementError):
            other.tenant(cid, actor=SERVICE).get_record(ref.record_id)
        with contextlib.suppress(KeyManagementError):
            other.close()
    assert caught == []
