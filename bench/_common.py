"""Shared pieces: configuration, Azurite and clients, workloads, timing and result lines."""

from __future__ import annotations

import contextlib
import dataclasses
import datetime as dt
import itertools
import json
import os
import statistics
import sys
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import requests
from azure.core.pipeline.transport import RequestsTransport
from azure.storage.blob import BlobServiceClient
from cryptography.hazmat.primitives.keywrap import aes_key_unwrap, aes_key_wrap

from mizaic_processor import (
    Actor,
    ControllerScope,
    LocalKeyring,
    NHSNumber,
    Processor,
)
from mizaic_processor.testing import AzuriteServer

KIB = 1024
MIB = 1024 * 1024
MB = 1_000_000

OPERATOR = Actor.processor_operator("bench-operator@mizaic.example")
SERVICE = Actor.service("svc-bench")
ADMIN = Actor.controller_admin("dpo-bench@trust.example")
REGION = "uksouth"
POOL_SIZE = 64
BULK_NOTE = "ours through the bulk API (create_records / get_records)"
THREAD_POOL_NOTE = "(thread pool over the per-record API)"


# -- configuration -----------------------------------------------------------------------


@dataclass
class Config:
    """Workload sizes. ``quick()`` is the smoke-run variant; the CLI overrides some fields."""

    reps: int = 5
    quick: bool = False
    warmup: bool = True
    concurrency: tuple[int, ...] = (8, 32)
    # (1) and (3) small records
    small_single: int = 150  # records per repetition, single-threaded
    small_concurrent: int = 480  # records per repetition at each concurrency (at least)
    per_subject: int = 10
    tasks_per_worker: int = 3  # keeps the pool full when a task is a subject's 10 records
    # (2) and (3) documents
    doc_sizes: tuple[int, ...] = (300 * KIB, 20 * MIB)
    doc_concurrency: int = 8
    doc_bytes_single: int = 40 * MIB  # bytes written per repetition, single-threaded
    doc_bytes_concurrent: int = 96 * MIB  # bytes per repetition at doc_concurrency
    doc_min_count: int = 4
    # (4) crypto alone
    crypto_records: int = 3000
    # (5) lookup scaling
    lookup_levels: tuple[int, ...] = (1_000, 10_000, 100_000)
    max_records: int | None = None
    lookup_calls: int = 20  # list_records calls per repetition
    populate_concurrency: int = 32
    # (6) due-record scaling
    due_count: int = 50
    # Azurite 3.37's find_blobs_by_tags scans only the first ~5000 blobs of a container
    # (by name) and drops later matches, so the store stays below that: 3,000 not due
    # plus their subjects' index entries and the audit blobs.
    due_not_due_levels: tuple[int, ...] = (300, 3_000)
    # (7) memory
    memory_bytes: int = 1024 * MIB
    memory_target_mib: float = 64.0

    @classmethod
    def quick_config(cls) -> Config:
        return cls(
            reps=2,
            quick=True,
            warmup=False,
            small_single=30,
            small_concurrent=64,
            tasks_per_worker=1,
            doc_sizes=(300 * KIB, 5 * MIB),
            doc_bytes_single=6 * MIB,
            doc_bytes_concurrent=12 * MIB,
            doc_min_count=2,
            crypto_records=300,
            lookup_levels=(100, 1_000),
            lookup_calls=5,
            due_count=20,
            due_not_due_levels=(100, 1_000),
            memory_bytes=64 * MIB,
        )

    def small_count(self, concurrency: int, per_subject: int) -> int:
        if concurrency == 1:
            n = self.small_single
        else:
            n = max(self.small_concurrent, self.tasks_per_worker * concurrency * per_subject)
        return n - n % per_subject

    def doc_count(self, size: int, concurrency: int) -> int:
        budget = self.doc_bytes_single if concurrency == 1 else self.doc_bytes_concurrent
        count = max(self.doc_min_count, budget // size)
        if concurrency > 1:
            count = max(count, concurrency)
        return int(count)

    def to_json(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


# -- output ------------------------------------------------------------------------------

_print_lock = threading.Lock()


def log(message: str) -> None:
    with _print_lock:
        print(message, flush=True)


def human_bytes(n: float) -> str:
    if n >= 1024 * MIB and n % (1024 * MIB) == 0:
        return f"{int(n // (1024 * MIB))} GiB"
    if n >= MIB and n % MIB == 0:
        return f"{int(n // MIB)} MiB"
    if n >= KIB and n % KIB == 0:
        return f"{int(n // KIB)} KiB"
    return f"{int(n)} B"


# -- statistics and result lines ---------------------------------------------------------


@dataclass
class Stats:
    median: float
    min: float
    max: float
    samples: list[float]

    @classmethod
    def of(cls, samples: Sequence[float]) -> Stats:
        values = [float(s) for s in samples]
        return cls(statistics.median(values), min(values), max(values), values)

    def fmt(self, digits: int = 1) -> str:
        return f"{self.median:,.{digits}f} [{self.min:,.{digits}f}-{self.max:,.{digits}f}]"


def fmt_ratio(ratio: float, met: bool | None) -> str:
    """Two decimals, or three when two would hide a miss by a hair (0.998 is not 1.00)."""
    text = f"{ratio:.2f}"
    return f"{ratio:.3f}" if met is False and text in ("0.50", "0.85", "0.90", "1.00") else text


@dataclass
class Target:
    """``op`` is '>=' (ratio at least), '<=' (ratio at most) or '<' (value below)."""

    op: str
    value: float
    on: str = "ratio"  # 'ratio', or 'ours_max' (the worst repetition of our figure)

    def text(self) -> str:
        sign = {">=": "≥", "<=": "≤", "<": "<"}[self.op]
        subject = "" if self.on == "ratio" else "worst rep "
        return f"{subject}{sign} {self.value:g}"

    def check(self, value: float) -> bool:
        if self.op == ">=":
            return value >= self.value
        if self.op == "<=":
            return value <= self.value
        return value < self.value


@dataclass
class Line:
    scenario: str
    name: str
    unit: str
    ours: Stats | None
    baseline: Stats | None = None
    baseline_name: str = ""
    ratio: float | None = None
    ratio_kind: str = "ours/baseline"  # or 'largest/smallest', 'MiB'
    target: Target | None = None
    met: bool | None = None
    note: str = ""
    chart: str = "higher"  # 'higher' (ratio, higher is better), 'lower', or '' (no bar)

    def evaluate(self) -> Line:
        if self.target is None:
            return self
        if self.target.on == "ours_max":
            value = self.ours.max if self.ours else None
        else:
            value = self.ratio
        self.met = None if value is None else self.target.check(value)
        return self

    def verdict(self) -> str:
        if self.target is None:
            return "(no target)"
        if self.met is None:
            return "n/a"
        return "MET" if self.met else "MISSED"

    def to_json(self) -> dict[str, Any]:
        out = dataclasses.asdict(self)
        out["target"] = None if self.target is None else {
            "op": self.target.op, "value": self.target.value, "on": self.target.on,
            "text": self.target.text(),
        }
        out["verdict"] = self.verdict()
        return out

    def console(self) -> str:
        digits = 2 if self.unit in ("ms", "MiB") else 1
        parts = [f"  {self.name}: ours {self.ours.fmt(digits) if self.ours else '-'} {self.unit}"]
        if self.baseline is not None:
            parts.append(f" vs {self.baseline_name} {self.baseline.fmt(digits)} {self.unit}")
        if self.ratio is not None:
            parts.append(f"; {self.ratio_kind} {fmt_ratio(self.ratio, self.met)}")
        if self.target is not None:
            parts.append(f"; target {self.target.text()}: {self.verdict()}")
        else:
            parts.append("; (no target)")
        if self.note:
            parts.append(f"  {self.note}")
        return "".join(parts)


@dataclass
class ScenarioResult:
    key: str
    title: str
    status: str = "ran"  # 'ran', 'not available yet', 'skipped', 'failed', 'partial'
    lines: list[Line] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    seconds: float = 0.0
    cpu: dict[str, float] = field(default_factory=dict)

    def add(self, line: Line) -> Line:
        line.evaluate()
        self.lines.append(line)
        log(line.console())
        return line

    def note(self, text: str) -> None:
        self.notes.append(text)
        log(f"  note: {text}")

    def to_json(self) -> dict[str, Any]:
        return {
            "key": self.key,
            "title": self.title,
            "status": self.status,
            "seconds": round(self.seconds, 1),
            "cpu_share": {k: round(v, 3) for k, v in self.cpu.items()},
            "notes": self.notes,
            "lines": [line.to_json() for line in self.lines],
        }


def throughput_line(
    scenario: str,
    name: str,
    unit: str,
    ours: Sequence[float],
    baseline: Sequence[float],
    baseline_name: str,
    target: Target | None,
    note: str = "",
) -> Line:
    o, b = Stats.of(ours), Stats.of(baseline)
    ratio = o.median / b.median if b.median else None
    return Line(
        scenario, name, unit, o, b, baseline_name, ratio, "ours/baseline", target, note=note
    )


def measure_pair(
    reps: int,
    ours: Callable[[int], float],
    baseline: Callable[[int], float],
    *,
    warmup: bool = False,
) -> tuple[list[float], list[float]]:
    """Run both ``reps`` times, alternating which goes first; each returns its figure."""
    ours_out, base_out = measure_set(reps, [ours, baseline], warmup=warmup)
    return ours_out, base_out


def measure_set(
    reps: int, runs: Sequence[Callable[[int], float]], *, warmup: bool = False
) -> list[list[float]]:
    """Run each of ``runs`` ``reps`` times, the order rotating every repetition (so no
    one of them always goes first); return each one's figures."""
    if warmup:
        for run in runs:
            run(-1)
    out: list[list[float]] = [[] for _ in runs]
    for rep in range(reps):
        for k in range(len(runs)):
            which = (k + rep) % len(runs)
            out[which].append(runs[which](rep))
    return out


def measure_with_floor(
    cfg: Config,
    concurrency: int,
    runs: tuple[Callable[[int], float], Callable[[int], float], Callable[[int], float]],
    requests: Sequence[float],
) -> tuple[list[float], list[float], list[float] | None, str]:
    """Measure (ours, baseline, floor) single-threaded, (ours, baseline) concurrently (the
    floor is a single-threaded bound); return their figures and the note on ours' requests
    per record (filled in by ``ours`` as it runs)."""
    ours, baseline, floor = runs
    floor_s: list[float] | None = None
    if concurrency == 1:
        ours_s, base_s, floor_s = measure_set(cfg.reps, [ours, baseline, floor],
                                              warmup=cfg.warmup)
    else:
        ours_s, base_s = measure_pair(cfg.reps, ours, baseline, warmup=cfg.warmup)
    note = f"ours {sum(requests) / len(requests):.2f} requests/record vs raw 1"
    if concurrency > 1:
        note = f"{BULK_NOTE}; {note}"
    return ours_s, base_s, floor_s, note


class AuditFloor:
    """The least a write-ahead audited operation can cost on this store: the raw SDK
    appending one audit line to an append blob, then (a write) uploading, or together
    with it (a read) downloading. Measured as a second baseline, it separates what the
    audit rule costs from what the library adds on top of it.

    Both calls go through a client on the library's own HTTP session (which resolves the
    proxy and ``.netrc`` environment once per host, not on every request as a plain
    ``requests`` session does), so the floor pays no per-request cost the library avoids.
    """

    LINE = json.dumps({
        "id": "e" + "0" * 26, "at": "2026-01-01T00:00:00+00:00", "actor": "svc-bench",
        "role": "service", "op": "record.create", "action": "C", "entity": "r" + "0" * 52,
        "outcome": "success", "purpose": "TREAT", "chain": "w" + "0" * 26, "seq": 1,
        "prev": "0" * 64,
    }).encode() + b"\n"
    NOTE = ("floor = the raw SDK, on the library's HTTP session: append_block of one audit "
            "line to an append blob, and the same raw call, a write after the append, a read "
            "alongside it")

    def __init__(self, conn_str: str, container: str) -> None:
        self._service = lean_service(conn_str)
        self._container = self._service.get_container_client(container)
        self._segment = 0
        self._blocks = 0
        self._client = self._next_segment()
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="bench-floor")

    def _next_segment(self) -> Any:
        self._segment += 1
        self._blocks = 0
        client = self._container.get_blob_client(f"floor-audit/{os.getpid()}/{self._segment}")
        client.create_append_blob()
        return client

    def _append(self) -> None:
        if self._blocks >= 40_000:
            self._client = self._next_segment()
        self._blocks += 1
        self._client.append_block(self.LINE, length=len(self.LINE))

    def write(self, name: str, data: bytes) -> None:
        """Append the audit line, then upload ``data`` as ``name``."""
        self._append()
        self._container.get_blob_client(name).upload_blob(data, length=len(data))

    def read(self, name: str) -> None:
        """Download ``name`` while the audit line is appended; return once both are done."""
        pending = self._pool.submit(self._append)
        self._container.download_blob(name).readall()
        pending.result()

    def close(self) -> None:
        self._pool.shutdown()
        self._service.close()


def run_tasks(fn: Callable[[Any], Any], tasks: Sequence[Any], concurrency: int) -> float:
    """Run ``fn`` over ``tasks`` with ``concurrency`` in flight; return elapsed seconds."""
    if concurrency <= 1:
        start = time.perf_counter()
        for task in tasks:
            fn(task)
        return time.perf_counter() - start
    with ThreadPoolExecutor(max_workers=concurrency) as pool:
        start = time.perf_counter()
        for _ in pool.map(fn, tasks):
            pass
        return time.perf_counter() - start


# -- Azurite and clients -----------------------------------------------------------------


AZURITE_CPU = [0.0]  # CPU seconds used by the Azurite processes of finished scenarios


@contextlib.contextmanager
def azurite() -> Iterator[AzuriteServer]:
    """A fresh Azurite in disk mode in a temporary folder, removed afterwards."""
    import psutil

    server = AzuriteServer(startup_timeout=60.0, stop_timeout=30.0)
    server.start()
    try:
        yield server
    finally:
        with contextlib.suppress(Exception):
            times = psutil.Process(server.pid).cpu_times()
            AZURITE_CPU[0] += times.user + times.system
        server.close()


class CpuMeter:
    """How much of the machine's CPU went to other processes while a scenario ran.

    Other sessions may share this machine; their load makes every figure noisier. Busy
    CPU of the whole machine minus this process (and its waited-for children) minus the
    scenario's Azurite = everybody else.
    """

    def __init__(self) -> None:
        import psutil

        self._psutil = psutil

    def _busy(self) -> float:
        t = self._psutil.cpu_times()
        return float(t.user + t.nice + t.system + getattr(t, "irq", 0.0)
                     + getattr(t, "softirq", 0.0) + getattr(t, "steal", 0.0))

    def _own(self) -> float:
        t = self._psutil.Process().cpu_times()
        return float(t.user + t.system + t.children_user + t.children_system)

    def __enter__(self) -> CpuMeter:
        self._wall = time.monotonic()
        self._b, self._o, self._a = self._busy(), self._own(), AZURITE_CPU[0]
        self.load_before = os.getloadavg()[0]
        return self

    def __exit__(self, *exc: object) -> None:
        wall = max(time.monotonic() - self._wall, 1e-9)
        cores = os.cpu_count() or 1
        busy, own, az = self._busy() - self._b, self._own() - self._o, AZURITE_CPU[0] - self._a
        self.own_share = own / (wall * cores)
        self.azurite_share = az / (wall * cores)
        self.other_share = max(0.0, busy - own - az) / (wall * cores)
        self.load_after = os.getloadavg()[0]

    def text(self) -> str:
        return (f"machine CPU during this scenario: bench {self.own_share:.0%}, Azurite "
                f"{self.azurite_share:.0%}, other processes {self.other_share:.0%} "
                f"(load average {self.load_before:.1f} -> {self.load_after:.1f})")


def raw_service(conn_str: str, **kwargs: Any) -> BlobServiceClient:
    """A plain BlobServiceClient with a connection pool big enough for 32+ threads."""
    session = requests.Session()
    adapter = requests.adapters.HTTPAdapter(pool_connections=POOL_SIZE, pool_maxsize=POOL_SIZE)
    session.mount("http://", adapter)
    session.mount("https://", adapter)
    transport = RequestsTransport(session=session, session_owner=True)
    return BlobServiceClient.from_connection_string(conn_str, transport=transport, **kwargs)


def lean_service(conn_str: str) -> BlobServiceClient:
    """A plain BlobServiceClient on the library's own HTTP session, which resolves the
    proxy and ``.netrc`` environment once per host instead of on every request: the raw
    SDK without a per-request cost the library does not pay."""
    from mizaic_processor._azure.blob import _Session

    transport = RequestsTransport(session=_Session(POOL_SIZE), session_owner=True)
    return BlobServiceClient.from_connection_string(conn_str, transport=transport)


class LocalKEK:
    """A key-encryption key for the SDK's client-side encryption, AES key wrap (RFC 3394)."""

    def __init__(self, kid: str = "local:bench-kek") -> None:
        self._key = os.urandom(32)
        self._kid = kid

    def wrap_key(self, key: bytes) -> bytes:
        return aes_key_wrap(self._key, key)

    def unwrap_key(self, key: bytes, algorithm: str) -> bytes:
        if algorithm != "A256KW":
            raise ValueError("unknown key wrap algorithm")
        return aes_key_unwrap(self._key, key)

    def get_kid(self) -> str:
        return self._kid

    def get_key_wrap_algorithm(self) -> str:
        return "A256KW"


def cse_service(conn_str: str) -> BlobServiceClient:
    """A client using the SDK's own client-side encryption v2 (AES-GCM, 4 MiB regions)."""
    return raw_service(
        conn_str,
        require_encryption=True,
        encryption_version="2.0",
        key_encryption_key=LocalKEK(),
    )


@dataclass
class Library:
    processor: Processor
    controller_id: str
    scope: ControllerScope
    admin: ControllerScope

    def close(self) -> None:
        self.processor.close()


_controller_counter = itertools.count(1)


def library(conn_str: str, name: str) -> Library:
    """A Processor with a freshly registered controller and a service scope on it."""
    processor = Processor.from_connection_string(
        conn_str, region=REGION, keyring=LocalKeyring.generate()
    )
    cid = f"bench-{name}-{os.getpid()}-{next(_controller_counter)}"
    processor.register_controller(cid, name="Bench Trust", actor=OPERATOR)
    scope = processor.tenant(cid, actor=SERVICE)
    admin = processor.tenant(cid, actor=ADMIN)
    return Library(processor, cid, scope, admin)


# -- workloads ---------------------------------------------------------------------------


def _nhs_numbers() -> Iterator[str]:
    base = 400_000_000 + (os.getpid() % 1000) * 100_000
    for n in itertools.count(base):
        digits = f"{n:09d}"
        total = sum(int(d) * (10 - i) for i, d in enumerate(digits))
        check = 11 - total % 11
        if check == 11:
            check = 0
        if check == 10:
            continue
        yield digits + str(check)


_nhs_iter = _nhs_numbers()
_nhs_lock = threading.Lock()


def new_subject() -> NHSNumber:
    """A new, valid, never-used NHS number (Modulus 11)."""
    with _nhs_lock:
        return NHSNumber(next(_nhs_iter))


_NOTES = (
    "Seen in clinic with daughter. Palpitations settled since bisoprolol uptitrated; no "
    "syncope, no chest pain. Echo last month: LVEF 55%, mild LA dilatation. ECG today in "
    "sinus rhythm, rate 68. Discussed anticoagulation again: CHA2DS2-VASc 4, HAS-BLED 1; "
    "continues apixaban with good adherence. Renal function stable (eGFR 62). Advised to "
    "avoid NSAIDs. Plan: continue current medication, repeat U&E in 3 months, review in "
    "cardiology clinic in 6 months or sooner if symptomatic. Letter copied to GP. "
)


def record_fields(i: int, target_bytes: int = 2048) -> dict[str, Any]:
    """12 fields of realistic structured clinical data, about ``target_bytes`` of JSON."""
    fields: dict[str, Any] = {
        "specialty": "cardiology",
        "encounter_type": "outpatient follow-up",
        "clinician": f"Dr A. Example ({i % 97:02d})",
        "location": "Ward 7, Cardiology Outpatients, Royal Example Hospital",
        "diagnosis": "Paroxysmal atrial fibrillation; essential hypertension",
        "diagnosis_codes": ["I48.0", "I10", "E11.9", "Z95.0"],
        "medications": [
            "apixaban 5 mg twice daily",
            "bisoprolol 2.5 mg once daily",
            "ramipril 5 mg once daily",
            f"metformin {500 + 250 * (i % 3)} mg twice daily",
            "atorvastatin 20 mg at night",
        ],
        "allergies": ["penicillin (rash)", "latex (contact dermatitis)"],
        "observations": {
            "bp_systolic": 118 + i % 30,
            "bp_diastolic": 72 + i % 15,
            "heart_rate": 60 + i % 25,
            "spo2": 97,
            "weight_kg": 80.5,
        },
        "follow_up": f"2026-{1 + i % 12:02d}-15",
        "page_count": 1 + i % 40,
        "notes": "",
    }
    base = len(json.dumps(fields, separators=(",", ":")).encode())
    room = max(0, target_bytes - base)
    fields["notes"] = (_NOTES * (1 + room // len(_NOTES)))[:room]
    return fields


def record_json(fields: dict[str, Any]) -> bytes:
    return json.dumps(fields, separators=(",", ":")).encode()


EVENTS = {"last_treatment": dt.date(2025, 1, 20)}


def chunked(items: Sequence[Any], size: int) -> list[Sequence[Any]]:
    return [items[i : i + size] for i in range(0, len(items), size)]


def first(iterable: Iterable[Any]) -> Any:
    return next(iter(iterable))


def environment() -> dict[str, Any]:
    """Machine and versions, for the results."""
    import platform
    from importlib.metadata import PackageNotFoundError, version
    from pathlib import Path

    import psutil

    from mizaic_processor.testing import find_azurite_js

    def pkg(name: str) -> str:
        try:
            return version(name)
        except PackageNotFoundError:
            return "not installed"

    azurite_version = "unknown"
    with contextlib.suppress(Exception):
        package = Path(find_azurite_js()).parents[2] / "package.json"
        azurite_version = json.loads(package.read_text())["version"]
    node_version = "unknown"
    commit = "unknown"
    dirty = None
    import subprocess

    with contextlib.suppress(Exception):
        node_version = subprocess.run(
            ["node", "--version"], capture_output=True, text=True, timeout=10, check=True
        ).stdout.strip()
    root = Path(__file__).resolve().parents[1]
    with contextlib.suppress(Exception):
        commit = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], cwd=root, capture_output=True, text=True,
            timeout=10, check=True,
        ).stdout.strip()
        status = subprocess.run(
            ["git", "status", "--porcelain", "--", "src"], cwd=root, capture_output=True,
            text=True, timeout=10, check=True,
        ).stdout
        dirty = bool(status.strip())
    return {
        "date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "cpu_count": os.cpu_count(),
        "physical_cores": psutil.cpu_count(logical=False),
        "memory_gib": round(psutil.virtual_memory().total / 2**30, 1),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "azurite": azurite_version,
        "node": node_version,
        "azure-storage-blob": pkg("azure-storage-blob"),
        "azure-core": pkg("azure-core"),
        "cryptography": pkg("cryptography"),
        "mizaic-processor": pkg("mizaic-processor"),
        "git_commit": commit,
        "src_modified_since_commit": dirty,
        "argv": sys.argv[1:],
    }
