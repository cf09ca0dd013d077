"""A processor used in a forked child (gunicorn --preload, multiprocessing 'fork', Celery
prefork) keeps working: the worker threads of staged uploads and document reads, which a
child does not inherit, are rebuilt there instead of waited on forever."""

from __future__ import annotations

import os
import signal
import time
import uuid

import pytest

from mizaic_processor import Actor, LocalKeyring, NHSNumber, Processor
from mizaic_processor.testing import AzuriteServer

OPERATOR = Actor.processor_operator("ops@mizaic.example")
SERVICE = Actor.service("svc-epr")
PDF = "application/pdf"
LARGE = 9 * 1024 * 1024 + 3  # above what is held in memory: staged in blocks on the pool


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

        read_end, write_end = os.pipe()
        pid = os.fork()
        if pid == 0:  # the child: must neither hang nor fail
            status = 1
            try:
                signal.alarm(60)
                child = proc.tenant(cid, actor=SERVICE)
                with child.open_content(ref.record_id) as reader:
                    ok = reader.read() == big
                again = child.create_record(NHSNumber("9434765919"), category="adult",
                                            content=big[::-1], content_type=PDF)
                with child.open_content(again.record_id) as reader:
                    ok = ok and reader.read() == big[::-1]
                os.write(write_end, b"ok" if ok else b"wrong bytes")
                status = 0
            except BaseException as exc:  # report, never return into pytest in the child
                os.write(write_end, type(exc).__name__.encode())
            finally:
                os._exit(status)
        os.close(write_end)
        deadline = time.monotonic() + 90
        while True:
            done, status = os.waitpid(pid, os.WNOHANG)
            if done:
                break
            if time.monotonic() > deadline:
                os.kill(pid, signal.SIGKILL)
                os.waitpid(pid, 0)
                pytest.fail("the forked child hung")
            time.sleep(0.1)
        report = os.read(read_end, 200)
        os.close(read_end)
        assert report == b"ok", report
        assert os.waitstatus_to_exitcode(status) == 0
