"""Fixtures shared by the integration tests: a freshly registered controller on the
session's processor, its scopes, and its container through the raw SDK. A test module
that needs something different defines its own fixture of the same name."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest
from azure.storage.blob import BlobServiceClient, ContainerClient

from mizaic_processor import Actor, ControllerScope, Processor
from mizaic_processor.testing import AzuriteServer

OPERATOR = Actor.processor_operator("ops@mizaic.example")
SERVICE = Actor.service("svc-epr")
ADMIN = Actor.controller_admin("dpo@trust.example")


@pytest.fixture
def cid(processor: Processor) -> str:
    """A newly registered controller's id."""
    controller_id = "t" + uuid.uuid4().hex[:10]
    processor.register_controller(controller_id, name="Test Trust", actor=OPERATOR)
    return controller_id


@pytest.fixture
def svc(processor: Processor, cid: str) -> ControllerScope:
    return processor.tenant(cid, actor=SERVICE)


@pytest.fixture
def admin(processor: Processor, cid: str) -> ControllerScope:
    return processor.tenant(cid, actor=ADMIN)


@pytest.fixture
def raw(azurite: AzuriteServer, cid: str) -> Iterator[ContainerClient]:
    """The controller's container through the raw SDK (to inspect and tamper)."""
    with BlobServiceClient.from_connection_string(azurite.connection_string) as service:
        yield service.get_container_client(f"mzc-{cid}")
