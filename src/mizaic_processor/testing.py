"""Test support: a real Azurite launcher and a pytest plugin.

The plugin is registered through the ``pytest11`` entry point, so any project that installs
``mizaic-processor`` (and has ``pytest``) gets these fixtures:

``azurite``
    Session scope. A started :class:`AzuriteServer` with its data in a temporary folder.
``azurite_factory``
    Function scope. A callable that starts extra, independent :class:`AzuriteServer` instances
    (for kill and restart tests); all of them are stopped when the test ends.
``processor``
    Function scope. A :class:`mizaic_processor.Processor` connected to the session ``azurite``
    with a freshly generated local keyring, closed after the test.

The module can also run a command against a throw-away Azurite::

    python -m mizaic_processor.testing run -- python examples/quickstart.py

which sets ``MIZAIC_CONNECTION_STRING`` and ``MIZAIC_REGION=uksouth`` for the command.

Azurite is the ``azurite`` npm package. Its ``azurite.js`` is found through the
``MIZAIC_AZURITE_JS`` environment variable, else in ``node_modules/azurite/dist/src/`` of the
current directory or one of its parents (run ``npm ci`` at the repository root). The module does
no I/O at import time and imports only the standard library (``pytest`` if it is installed).
"""

from __future__ import annotations

import argparse
import atexit
import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import weakref
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from types import TracebackType
from typing import IO, TYPE_CHECKING, Any, Self

if TYPE_CHECKING:
    from mizaic_processor import Processor

__all__ = [
    "ACCOUNT_KEY",
    "ACCOUNT_NAME",
    "AzuriteFactory",
    "AzuriteServer",
    "find_azurite_js",
    "main",
]

#: The well-known development storage account of Azurite (public, documented by Microsoft).
ACCOUNT_NAME = "devstoreaccount1"
#: The well-known development storage key of Azurite (public, documented by Microsoft).
ACCOUNT_KEY = (
    "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="
)

AZURITE_JS_ENV = "MIZAIC_AZURITE_JS"
_AZURITE_JS_RELATIVE = Path("node_modules", "azurite", "dist", "src", "azurite.js")
_HOST = "127.0.0.1"
_LOG_TAIL_CHARS = 4000


def find_azurite_js() -> Path:
    """Locate Azurite's ``azurite.js`` entry script.

    Looks at the ``MIZAIC_AZURITE_JS`` environment variable first, then for
    ``node_modules/azurite/dist/src/azurite.js`` in the current directory and each of its
    parents, then next to this installed package (an editable install in a repository).

    :returns: the absolute path of ``azurite.js``.
    :raises RuntimeError: if ``MIZAIC_AZURITE_JS`` names a missing file, or Azurite is not found.
    """
    override = os.environ.get(AZURITE_JS_ENV)
    if override:
        path = Path(override).expanduser()
        if not path.is_file():
            raise RuntimeError(f"{AZURITE_JS_ENV}={override!r} does not name an existing file")
        return path.resolve()
    cwd = Path.cwd().resolve()
    here = Path(__file__).resolve().parent
    for directory in (cwd, *cwd.parents, *here.parents):
        candidate = directory / _AZURITE_JS_RELATIVE
        if candidate.is_file():
            return candidate
    raise RuntimeError(
        f"Azurite not found: no {_AZURITE_JS_RELATIVE} in {cwd} or its parents. "
        "Run `npm ci` (or `make node_modules`) at the repository root, "
        f"or set {AZURITE_JS_ENV} to the path of azurite.js."
    )


def _find_node() -> str:
    node = shutil.which("node")
    if node is None:
        raise RuntimeError(
            "Node.js (`node`) is not on PATH; Azurite needs it "
            "(on Debian/Ubuntu: apt-get install -y nodejs npm)."
        )
    return node


def _free_ports(count: int) -> list[int]:
    """Reserve ``count`` distinct free loopback ports by binding port 0, then release them."""
    sockets: list[socket.socket] = []
    try:
        for _ in range(count):
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            sockets.append(sock)
            sock.bind((_HOST, 0))
        return [int(sock.getsockname()[1]) for sock in sockets]
    finally:
        for sock in sockets:
            sock.close()


def _port_open(port: int) -> bool:
    try:
        with socket.create_connection((_HOST, port), timeout=0.5):
            return True
    except OSError:
        return False


_live_servers: weakref.WeakSet[AzuriteServer] = weakref.WeakSet()
_live_lock = threading.Lock()


@atexit.register
def _stop_live_servers() -> None:  # pragma: no cover - safety net at interpreter exit
    with _live_lock:
        servers = list(_live_servers)
    for server in servers:
        with contextlib.suppress(Exception):
            server.kill()


class AzuriteServer:
    """One Azurite process (blob, queue and table services) on free loopback ports.

    Azurite runs in disk mode in ``location``; :meth:`restart` reuses the folder and the ports,
    so data written before a clean :meth:`stop` survives. Azurite saves its metadata about every
    5 s, so after :meth:`kill` (SIGKILL) the last few seconds of writes may be lost.

    Ports are chosen on the first :meth:`start`; the endpoint properties raise before that.

    :param location: data folder; a new temporary folder (removed by :meth:`close` or on leaving
        the ``with`` block) when omitted.
    :param azurite_js: path of ``azurite.js``; found with :func:`find_azurite_js` when omitted.
    :param node: the ``node`` executable; found on ``PATH`` when omitted.
    :param startup_timeout: seconds to wait for the blob and queue ports to accept connections.
    :param stop_timeout: seconds to wait after SIGTERM before sending SIGKILL.
    :param extra_args: further command-line arguments for Azurite.
    """

    def __init__(
        self,
        location: str | os.PathLike[str] | None = None,
        *,
        azurite_js: str | os.PathLike[str] | None = None,
        node: str | None = None,
        startup_timeout: float = 30.0,
        stop_timeout: float = 10.0,
        extra_args: Sequence[str] = (),
    ) -> None:
        self._location: Path | None = Path(location) if location is not None else None
        self._owns_location = location is None
        self._azurite_js: Path | None = Path(azurite_js) if azurite_js is not None else None
        self._node = node
        self._startup_timeout = startup_timeout
        self._stop_timeout = stop_timeout
        self._extra_args = tuple(extra_args)
        self._ports: tuple[int, int, int] | None = None
        self._process: subprocess.Popen[bytes] | None = None
        self._log: IO[bytes] | None = None
        self._lock = threading.RLock()

    # -- properties -------------------------------------------------------------------------

    @property
    def location(self) -> Path:
        """The data folder.

        :raises RuntimeError: if no folder was given and the server was never started.
        """
        if self._location is None:
            raise RuntimeError("AzuriteServer has no data folder yet: call start() first")
        return self._location

    @property
    def blob_port(self) -> int:
        """The blob service port.

        :raises RuntimeError: if the server was never started.
        """
        return self._require_ports()[0]

    @property
    def queue_port(self) -> int:
        """The queue service port.

        :raises RuntimeError: if the server was never started.
        """
        return self._require_ports()[1]

    @property
    def table_port(self) -> int:
        """The table service port.

        :raises RuntimeError: if the server was never started.
        """
        return self._require_ports()[2]

    @property
    def blob_endpoint(self) -> str:
        """The blob service URL, ``http://127.0.0.1:<port>/devstoreaccount1``.

        :raises RuntimeError: if the server was never started.
        """
        return f"http://{_HOST}:{self.blob_port}/{ACCOUNT_NAME}"

    @property
    def queue_endpoint(self) -> str:
        """The queue service URL, ``http://127.0.0.1:<port>/devstoreaccount1``.

        :raises RuntimeError: if the server was never started.
        """
        return f"http://{_HOST}:{self.queue_port}/{ACCOUNT_NAME}"

    @property
    def connection_string(self) -> str:
        """A storage connection string for the development account with the blob and queue
        endpoints of this server.

        :raises RuntimeError: if the server was never started.
        """
        return (
            "DefaultEndpointsProtocol=http;"
            f"AccountName={ACCOUNT_NAME};"
            f"AccountKey={ACCOUNT_KEY};"
            f"BlobEndpoint={self.blob_endpoint};"
            f"QueueEndpoint={self.queue_endpoint};"
        )

    @property
    def pid(self) -> int | None:
        """The process id of the running Azurite (``node``) process, or ``None`` when stopped."""
        process = self._process
        if process is None or process.poll() is not None:
            return None
        return process.pid

    @property
    def running(self) -> bool:
        """Whether the Azurite process is alive."""
        return self.pid is not None

    # -- lifecycle --------------------------------------------------------------------------

    def start(self) -> Self:
        """Start Azurite and wait until the blob and queue ports accept connections.

        Does nothing if the server is already running. The first start picks free ports (and
        retries with new ones if another process took them meanwhile); later starts reuse them.

        :returns: this server.
        :raises RuntimeError: if Node.js or Azurite is missing, or Azurite exits or does not
            become ready within ``startup_timeout`` (the message holds its output).
        """
        with self._lock:
            if self.running:
                return self
            self._reap()
            if self._location is None:
                self._location = Path(tempfile.mkdtemp(prefix="azurite-"))
            self._location.mkdir(parents=True, exist_ok=True)
            fixed_ports = self._ports is not None
            attempts = 1 if fixed_ports else 3
            for attempt in range(attempts):
                if not fixed_ports:
                    first, second, third = _free_ports(3)
                    self._ports = (first, second, third)
                try:
                    self._launch()
                    return self
                except _PortInUseError:
                    if attempt == attempts - 1:
                        raise
            raise AssertionError("unreachable")  # pragma: no cover

    def stop(self) -> None:
        """Stop Azurite gracefully: SIGTERM, then SIGKILL after ``stop_timeout`` seconds.

        Safe to call more than once, and on a server that was never started.
        """
        with self._lock:
            process = self._process
            if process is not None and process.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    process.send_signal(signal.SIGTERM)
                try:
                    process.wait(timeout=self._stop_timeout)
                except subprocess.TimeoutExpired:
                    with contextlib.suppress(ProcessLookupError):
                        process.kill()
                    process.wait()
            self._reap()

    def kill(self) -> None:
        """Kill Azurite with SIGKILL, as in a crash. Writes of the last ~5 s may be lost.

        Safe to call more than once, and on a server that was never started.
        """
        with self._lock:
            process = self._process
            if process is not None and process.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    process.kill()
                process.wait()
            self._reap()

    def restart(self) -> Self:
        """Stop Azurite gracefully (if running) and start it again on the same folder and ports.

        :returns: this server.
        :raises RuntimeError: if Azurite does not come back (see :meth:`start`).
        """
        with self._lock:
            self.stop()
            return self.start()

    def close(self) -> None:
        """Stop Azurite and remove the data folder if this server created it."""
        with self._lock:
            self.stop()
            if self._owns_location and self._location is not None:
                shutil.rmtree(self._location, ignore_errors=True)
                self._location = None

    def __enter__(self) -> Self:
        """Start the server.

        :raises RuntimeError: see :meth:`start`.
        """
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def __repr__(self) -> str:
        ports = self._ports or ("-", "-", "-")
        return (
            f"<AzuriteServer pid={self.pid} blob={ports[0]} queue={ports[1]} table={ports[2]} "
            f"location={str(self._location)!r}>"
        )

    # -- internals --------------------------------------------------------------------------

    def _require_ports(self) -> tuple[int, int, int]:
        if self._ports is None:
            raise RuntimeError("AzuriteServer has no ports yet: call start() first")
        return self._ports

    def command(self) -> list[str]:
        """The command line that :meth:`start` runs.

        :returns: the argument list, beginning with the ``node`` executable.
        :raises RuntimeError: if Node.js or Azurite is missing, or the server was never started.
        """
        blob, queue, table = self._require_ports()
        if self._azurite_js is None:
            self._azurite_js = find_azurite_js()
        node = self._node or _find_node()
        return [
            node,
            str(self._azurite_js),
            "--silent",
            "--location",
            str(self.location),
            "--blobHost",
            _HOST,
            "--queueHost",
            _HOST,
            "--blobPort",
            str(blob),
            "--queuePort",
            str(queue),
            "--tablePort",
            str(table),
            "--skipApiVersionCheck",
            "--disableTelemetry",
            *self._extra_args,
        ]

    def _launch(self) -> None:
        command = self.command()
        log = tempfile.TemporaryFile(prefix="azurite-", suffix=".log")  # noqa: SIM115
        try:
            process = subprocess.Popen(  # noqa: S603 - fixed argument list, no shell
                command,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                cwd=str(self.location),
                start_new_session=True,
            )
        except BaseException:
            log.close()
            raise
        self._process = process
        self._log = log
        with _live_lock:
            _live_servers.add(self)
        try:
            self._wait_ready(process)
        except BaseException:
            self.kill()
            raise

    def _wait_ready(self, process: subprocess.Popen[bytes]) -> None:
        blob, queue, _ = self._require_ports()
        deadline = time.monotonic() + self._startup_timeout
        while True:
            code = process.poll()
            if code is not None:
                output = self._log_tail()
                message = (
                    f"Azurite exited with code {code} during startup "
                    f"(blob port {blob}, queue port {queue}). Output:\n{output}"
                )
                if "EADDRINUSE" in output:
                    raise _PortInUseError(message)
                raise RuntimeError(message)
            if _port_open(blob) and _port_open(queue):
                return
            if time.monotonic() > deadline:
                raise RuntimeError(
                    f"Azurite did not accept connections on ports {blob} and {queue} within "
                    f"{self._startup_timeout:g} s. Output:\n{self._log_tail()}"
                )
            time.sleep(0.05)

    def _log_tail(self) -> str:
        log = self._log
        if log is None or log.closed:
            return ""
        log.flush()
        log.seek(0)
        text = log.read().decode("utf-8", errors="replace")
        return text[-_LOG_TAIL_CHARS:] or "(no output)"

    def _reap(self) -> None:
        """Forget a dead process and close its log file."""
        process = self._process
        if process is not None and process.poll() is None:
            return
        if process is not None:
            process.wait()
        self._process = None
        if self._log is not None:
            self._log.close()
            self._log = None
        with _live_lock:
            _live_servers.discard(self)


class _PortInUseError(RuntimeError):
    """Azurite could not listen because a chosen port was taken meanwhile."""


AzuriteFactory = Callable[..., AzuriteServer]
"""Type of the ``azurite_factory`` fixture: call it (with :class:`AzuriteServer` keyword
arguments) to get a started server."""


# -- command line ---------------------------------------------------------------------------


def _raise_system_exit(signum: int, frame: object) -> None:
    raise SystemExit(128 + signum)


def _run(command: Sequence[str]) -> int:
    with AzuriteServer() as server:
        env = dict(os.environ)
        env["MIZAIC_CONNECTION_STRING"] = server.connection_string
        env["MIZAIC_REGION"] = "uksouth"
        print(f"Azurite ready: blob {server.blob_endpoint}", file=sys.stderr, flush=True)
        try:
            child = subprocess.Popen(command, env=env)  # noqa: S603 - the user's own command
        except OSError as exc:
            print(f"cannot run {command[0]!r}: {exc}", file=sys.stderr)
            return 127
        try:
            return child.wait()
        except KeyboardInterrupt:
            # The terminal sent SIGINT to the child as well: let it finish below.
            return 130
        finally:
            if child.poll() is None:
                child.terminate()
                try:
                    child.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    child.kill()
                    child.wait()


def main(argv: Sequence[str] | None = None) -> int:
    """Command-line entry: ``python -m mizaic_processor.testing run -- CMD [ARGS...]``.

    Starts Azurite in a temporary folder, runs ``CMD`` with ``MIZAIC_CONNECTION_STRING`` and
    ``MIZAIC_REGION=uksouth`` in its environment, stops Azurite and removes the folder (also on
    error or Ctrl-C).

    :param argv: the arguments (``sys.argv[1:]`` when omitted).
    :returns: the command's exit code (130 after Ctrl-C, 127 if it cannot be run).
    :raises SystemExit: on bad usage (exit code 2).
    :raises RuntimeError: if Azurite cannot be started.
    """
    parser = argparse.ArgumentParser(
        prog="python -m mizaic_processor.testing",
        description="Run a command against a throw-away Azurite storage emulator.",
    )
    sub = parser.add_subparsers(dest="action", required=True)
    run = sub.add_parser(
        "run",
        help="start Azurite, run CMD with MIZAIC_CONNECTION_STRING set, stop Azurite",
    )
    run.add_argument("cmd", nargs=argparse.REMAINDER, help="-- CMD [ARGS...]")
    args = parser.parse_args(list(sys.argv[1:] if argv is None else argv))
    command: list[str] = list(args.cmd)
    if command and command[0] == "--":
        command = command[1:]
    if not command:
        parser.error("run: missing the command to run (usage: run -- CMD [ARGS...])")
    # A SIGTERM (a CI timeout, `kill`) unwinds like Ctrl-C, so Azurite is stopped too.
    previous = signal.signal(signal.SIGTERM, _raise_system_exit)
    try:
        return _run(command)
    except KeyboardInterrupt:
        return 130
    finally:
        signal.signal(signal.SIGTERM, previous)


# -- pytest plugin --------------------------------------------------------------------------

try:
    import pytest as _pytest
except ModuleNotFoundError:  # pragma: no cover - the launcher works without pytest
    _HAVE_PYTEST = False
else:
    _HAVE_PYTEST = True

if _HAVE_PYTEST:

    @_pytest.fixture(scope="session")
    def azurite(tmp_path_factory: _pytest.TempPathFactory) -> Iterator[AzuriteServer]:
        """A running Azurite shared by the whole test session, stopped at the end.

        :raises RuntimeError: if Azurite cannot be started.
        """
        server = AzuriteServer(tmp_path_factory.mktemp("azurite"))
        server.start()
        try:
            yield server
        finally:
            server.stop()

    @_pytest.fixture
    def azurite_factory(tmp_path_factory: _pytest.TempPathFactory) -> Iterator[AzuriteFactory]:
        """A callable that starts extra independent Azurite servers, each in its own folder.

        Keyword arguments go to :class:`AzuriteServer` (``location`` defaults to a new
        temporary folder). Every server it made is stopped when the test ends.

        :raises RuntimeError: (from the callable) if Azurite cannot be started.
        """
        servers: list[AzuriteServer] = []

        def factory(**kwargs: Any) -> AzuriteServer:
            kwargs.setdefault("location", tmp_path_factory.mktemp("azurite-extra"))
            server = AzuriteServer(**kwargs)
            servers.append(server)
            return server.start()

        try:
            yield factory
        finally:
            for server in servers:
                server.stop()

    @_pytest.fixture
    def processor(azurite: AzuriteServer) -> Iterator[Processor]:
        """A :class:`~mizaic_processor.Processor` on the session Azurite (region ``uksouth``,
        a freshly generated local keyring, ``retry_total=2``), closed after the test.

        :raises RuntimeError: if Azurite cannot be started.
        """
        from mizaic_processor import LocalKeyring, Processor

        proc = Processor.from_connection_string(
            azurite.connection_string,
            region="uksouth",
            keyring=LocalKeyring.generate(),
            retry_total=2,
        )
        try:
            yield proc
        finally:
            proc.close()


if __name__ == "__main__":
    sys.exit(main())
