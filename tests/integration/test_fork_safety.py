"""A processor used in a forked child (gunicorn --preload, multiprocessing 'fork', Celery
prefork) keeps working: the worker threads of staged uploads and document reads, which a
child does not inherit, are rebuilt there instead of waited on forever."""

from __future__ import annotations

import datetime as dt
import os
import signal
import time
import uuid
from collections.abc import Callable

import pytest

from mizaic_processor import Actor, ControllerScope, LocalKeyring, NHSNumber, Processor
from mizaic_processor.testing import AzuriteServer

OPERATOR = Actor.processor_operator("ops@mizaic.example")
SERVICE = Actor.service("svc-epr")
PDF = "application/pdf"
LARGE = 9 * 1024 * 1024 + 3  # above what is held in memory: staged in blocks on the pool


def fork_child(work: Callable[[], str], *, alarm: int) -> tuple[int, int]:
    """Fork; the child runs ``work`` and writes what it returns (or its exception's type
    name) to a pipe, then exits without ever returning into pytest. Returns the child's
    pid and the pipe's read end."""
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:
        status = 1
        try:
            signal.alarm(alarm)
            os.write(write_end, work().encode())
            status = 0
        except BaseException as exc:  # report, never return into pytest in the child
            os.write(write_end, type(exc).__name__.encode())
        finally:
            os._exit(status)
    os.close(write_end)
    return pid, read_end


def child_report(pid: int, read_end: int, *, timeout: float) -> str:
    """Wait for the child (killed past ``timeout``) and return what it reported."""
    deadline = time.monotonic() + timeout
    while True:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            break
        if time.monotonic() > deadline:
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
            pytest.fail("the forked child hung")
        time.sleep(0.1)
    report = os.read(read_end, 200).decode()
    os.close(read_end)
    assert os.waitstatus_to_exitcode(status) == 0, report
    return report


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork")
def test_a_forked_child_reads_and_stages_documents_after_its_parent_did(
    azurite: AzuriteServer,
) -> None:
    with Processor.from_connection_string(
        azurite.connection_string, region="uksouth", keyring=LocalKeyring.generate()
    ) as proc:
        cid = "fk" + uuid.uuid4().hex[:10]
        proc.register_controller(cid, name="Fork Trust", actor=OPERATOR)
        scope = proc.tenant(cid, actor=SERVICE)
        big = bytes(range(251)) * (LARGE // 251) + b"x" * (LARGE % 251)
        ref = scope.create_record(NHSNumber("9434765919"), category="adult", content=big,
                                  content_type=PDF)
        with scope.open_content(ref.record_id) as reader:  # the parent's pool is busy now
            assert reader.read() == big

        def in_child() -> str:  # must neither hang nor fail
            child = proc.tenant(cid, actor=SERVICE)
            with child.open_content(ref.record_id) as reader:
                ok = reader.read() == big
            again = child.create_record(NHSNumber("9434765919"), category="adult",
                                        content=big[::-1], content_type=PDF)
            with child.open_content(again.record_id) as reader:
                ok = ok and reader.read() == big[::-1]
            return "ok" if ok else "wrong bytes"

        pid, read_end = fork_child(in_child, alarm=60)
        assert child_report(pid, read_end, timeout=90) == "ok"


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork")
@pytest.mark.parametrize("child_scope", ["made before the fork", "made in the child"])
def test_a_parent_and_its_forked_child_reading_at_once_each_get_their_own_answers(
    azurite: AzuriteServer, child_scope: str
) -> None:
    # The parent's idle keep-alive connections are copied into the child. Were both to
    # use one socket, Azure Storage's answers would reach the wrong process: a record
    # meant for the other (caught as an integrity failure or a mismatch) or a wait for
    # an answer the other process took. A scope made before the fork (a module-level
    # scope under gunicorn --preload) must audit through the child's own writer: the
    # parent's writer thread does not exist in the child.
    with Processor.from_connection_string(
        azurite.connection_string, region="uksouth", keyring=LocalKeyring.generate(),
        retry_total=0,
    ) as proc:
        cid = "fk" + uuid.uuid4().hex[:10]
        proc.register_controller(cid, name="Fork Trust", actor=OPERATOR)
        scope = proc.tenant(cid, actor=SERVICE)
        expected = {
            scope.create_record(NHSNumber("9434765919"), category="adult",
                                fields={"n": n}).record_id: n
            for n in range(24)
        }
        ids = list(expected)
        scope.get_records(ids, max_concurrency=8)  # 8 idle pooled connections now

        def read_rounds(reader: ControllerScope) -> str:
            for _ in range(15):
                records = reader.get_records(ids, max_concurrency=8)
                if [r.fields["n"] for r in records] != [expected[i] for i in ids]:
                    return "wrong records"
            return "ok"

        def in_child() -> str:
            mine = scope if child_scope == "made before the fork" else proc.tenant(
                cid, actor=SERVICE
            )
            return read_rounds(mine)

        pid, read_end = fork_child(in_child, alarm=120)
        try:
            parent = read_rounds(scope)
        except Exception as exc:
            parent = type(exc).__name__
        child = child_report(pid, read_end, timeout=150)
        assert (parent, child) == ("ok", "ok")


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork")
def test_a_forked_child_triages_requests_on_an_audit_chain_of_its_own() -> None:
    # The request desk's triage trail (requests naming no registered controller) is
    # audited by a writer of its own: made in the parent, it has no thread in the child.
    # Its own Azurite: the triage keys live in the processor-wide registry container,
    # which other tests' processors (other keyrings) have already initialised.
    def triage(proc: Processor) -> str:
        receipt = proc.requests.receive(
            kind="access", controller="A Trust Nobody Registered", subject="943 476 5919",
            contact={"email": "someone@example.org"},
            received_at=dt.datetime(2026, 3, 2, 9, 0, tzinfo=dt.UTC), channel="email",
            actor=OPERATOR,
        )
        return "ok" if receipt.triaged else "not triaged"

    with AzuriteServer() as server, Processor.from_connection_string(
        server.connection_string, region="uksouth", keyring=LocalKeyring.generate()
    ) as proc:
        assert triage(proc) == "ok"  # the parent's triage writer now runs
        pid, read_end = fork_child(lambda: triage(proc), alarm=60)
        assert child_report(pid, read_end, timeout=90) == "ok"
        assert triage(proc) == "ok"
