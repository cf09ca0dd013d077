"""The public surface changes only deliberately, and the pure core stays pure."""

from __future__ import annotations

import ast
import pathlib

import mizaic_processor

EXPECTED = {
    "AccessDeniedError", "Actor", "Appraisal", "AppraisalItem", "AuditError", "AuditEvent",
    "AuditReport", "AuditTamperedError", "AuditTrail", "BreachNotice", "BreachRef", "Channel",
    "ClockError", "ConfigurationError", "ConflictError", "ContactDetails", "ContentInfo",
    "ContentReader", "Controller", "ControllerRequests", "ControllerScope", "DeliveryInfo",
    "DeliveryReport", "DestructionEvidence", "DestructionReport", "Disclosure",
    "ErasureReport", "ExportSummary", "Fulfilment", "Hold", "HoldError", "HospitalNumber",
    "IndexReport", "Instruction", "IntegrityError", "InvalidInputError", "KeyManagementError",
    "KeyRotation", "KeyVaultKeyring", "Keyring", "LocalKeyring", "MizaicError", "NHSNumber",
    "NewRecord", "PartialFailureError",
    "NotFoundError", "Processor", "QueueRoute", "Receipt", "Record", "RecordRef",
    "RequestDesk", "RequestDetails", "RequestKind", "RequestStatus", "RequestSummary",
    "ResidencyError", "RestrictedError", "Retention", "RetentionInstruction", "RetentionRule",
    "Role", "RotationReport", "RouteInfo", "Settings", "StorageError", "SubjectId",
    "TriagedRequest", "WaitingFor", "WebhookRoute", "WrappedKey", "verify_webhook",
}
SRC = pathlib.Path(mizaic_processor.__file__).parent


def test_the_exported_names_are_exactly_the_agreed_public_api() -> None:
    assert set(mizaic_processor.__all__) == EXPECTED
    assert list(mizaic_processor.__all__) == sorted(mizaic_processor.__all__)
    for name in EXPECTED:
        assert getattr(mizaic_processor, name) is not None


def test_every_library_error_is_a_mizaic_error() -> None:
    errors = [getattr(mizaic_processor, n) for n in EXPECTED if n.endswith("Error")]
    assert errors
    assert all(issubclass(e, mizaic_processor.MizaicError) for e in errors)


def _imports(path: pathlib.Path) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            found.add(node.module)
    return found


def test_the_pure_core_imports_neither_azure_nor_the_network_nor_the_shell() -> None:
    core = sorted((SRC / "_core").glob("*.py"))
    assert len(core) >= 6
    for path in core:
        for module in _imports(path):
            assert not module.startswith(("azure", "requests", "urllib", "http", "socket")), (
                path.name, module)
            if module.startswith("mizaic_processor."):
                assert module in {"mizaic_processor.errors"} or module.startswith(
                    "mizaic_processor._core"), (path.name, module)


def test_only_the_adapters_talk_to_azure_storage_and_key_vault() -> None:
    allowed = {"_azure"}
    for path in SRC.rglob("*.py"):
        if path.parent.name in allowed:
            continue
        for module in _imports(path):
            if module.startswith(("azure.storage", "azure.keyvault")):
                # the test plugin uses the raw SDK only to check Azurite is up
                assert path.name == "testing.py", (path.name, module)


def test_the_package_ships_its_type_marker() -> None:
    assert (SRC / "py.typed").exists()
