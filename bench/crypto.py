"""(4) Crypto alone: a 12-field record through the library's pure core vs AESGCM directly.

Ours, per record, as the store does it on a write and then on a read:
``derive_record_keys`` (HKDF) + ``record_doc.encrypt_fields`` + ``fields_digest`` (when the
library has it) + ``encrypt_meta``, then ``derive_record_keys`` again + ``decrypt_meta``
(which re-checks the fields digest) + ``decrypt_fields`` of every field.
Nonces come from the library's ``NonceSource`` (as in the store: drawn 64 at a time).
Baseline: ``AESGCM(subject_key)`` (built once: the floor) encrypting and decrypting each
field's JSON with a random nonce (``os.urandom(12)``) and no associated data. Same fields,
same 32-byte key.
No storage, no serialisation of the record document.
"""

from __future__ import annotations

import json
import os
import time
from typing import Any

from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from mizaic_processor._core import envelope, ids, record_doc

from ._common import Config, ScenarioResult, Stats, Target, log, record_fields, throughput_line

KEY = "crypto"
TITLE = "Crypto alone (12-field record, no storage)"
CONTROLLER = "bench-crypto"


# The library's own nonce source, as the store uses it (random bytes drawn 64 nonces at a
# time per thread); the direct-AESGCM baseline calls os.urandom(12) per field, as a direct
# caller would.
_nonce = envelope.NonceSource()


def run(cfg: Config) -> ScenarioResult:
    result = ScenarioResult(KEY, TITLE)
    n = cfg.crypto_records
    subject_key = os.urandom(32)
    skid = os.urandom(16)
    templates = [record_fields(i) for i in range(50)]
    records = [
        (ids.make_record_id(skid, os.urandom(16)), templates[i % len(templates)])
        for i in range(n)
    ]
    aead = AESGCM(subject_key)

    def derive(rid: str) -> envelope.RecordKeys:
        return envelope.derive_record_keys(
            subject_key, skid=skid, key_version=1, controller_id=CONTROLLER, record_id=rid
        )

    def ours_encrypt() -> tuple[float, list[record_doc.RecordDoc]]:
        docs = []
        start = time.perf_counter()
        for rid, fields in records:
            keys = derive(rid)
            envs = record_doc.encrypt_fields(
                keys, fields, controller_id=CONTROLLER, record_id=rid, nonce=_nonce
            )
            meta = {
                "subject": {"kind": "nhs", "value": "9434765919"},
                "names": sorted(fields),
                "events": {"last_treatment": "2025-01-20"},
                "created_at": "2025-01-20T10:00:00+00:00",
                "updated_at": "2025-01-20T10:00:00+00:00",
                "category": "adult",
                "version": 1,
                "content_id": None,
            }
            meta["fields_digest"] = record_doc.fields_digest(envs)  # binds every envelope
            sealed = record_doc.encrypt_meta(
                keys, meta, controller_id=CONTROLLER, record_id=rid, nonce=_nonce()
            )
            docs.append(record_doc.RecordDoc(
                record_id=rid, category="adult", version=1, content_id=None, meta=sealed,
                fields=envs,
            ))
        return time.perf_counter() - start, docs

    def ours_decrypt(docs: list[record_doc.RecordDoc]) -> float:
        start = time.perf_counter()
        for (rid, fields), doc in zip(records, docs, strict=True):
            keys = derive(rid)
            meta = record_doc.decrypt_meta(keys, doc, controller_id=CONTROLLER, record_id=rid)
            values = record_doc.decrypt_fields(
                keys, doc, meta, None, controller_id=CONTROLLER, record_id=rid
            )
            if len(values) != len(fields):
                raise AssertionError("lost a field")
        return time.perf_counter() - start

    def base_encrypt() -> tuple[float, list[dict[str, bytes]]]:
        out = []
        start = time.perf_counter()
        for _rid, fields in records:
            sealed = {}
            for name, value in fields.items():
                nonce = os.urandom(12)
                plain = json.dumps(value, separators=(",", ":")).encode()
                sealed[name] = nonce + aead.encrypt(nonce, plain, None)
            out.append(sealed)
        return time.perf_counter() - start, out

    def base_decrypt(sealed_all: list[dict[str, bytes]]) -> float:
        start = time.perf_counter()
        for sealed in sealed_all:
            values: dict[str, Any] = {}
            for name, blob in sealed.items():
                values[name] = json.loads(aead.decrypt(blob[:12], blob[12:], None))
        return time.perf_counter() - start

    samples: dict[str, dict[str, list[float]]] = {
        who: {"encrypt": [], "decrypt": [], "both": []} for who in ("ours", "base")
    }

    def one(who: str) -> None:
        if who == "ours":
            te, docs = ours_encrypt()
            td = ours_decrypt(docs)
        else:
            te, sealed = base_encrypt()
            td = base_decrypt(sealed)
        samples[who]["encrypt"].append(n / te)
        samples[who]["decrypt"].append(n / td)
        samples[who]["both"].append(n / (te + td))

    log(f"  … {n} records per repetition")
    if cfg.warmup:
        one("ours")
        one("base")
        for who in samples.values():
            for values in who.values():
                values.clear()
    for rep in range(cfg.reps):
        for who in (("ours", "base") if rep % 2 == 0 else ("base", "ours")):
            one(who)
    labels = {"both": "encrypt + decrypt", "encrypt": "encrypt only", "decrypt": "decrypt only"}
    for part in ("both", "encrypt", "decrypt"):
        result.add(throughput_line(
            KEY, f"{labels[part]}, 12-field record", "records/s",
            samples["ours"][part], samples["base"][part], "AESGCM direct", Target(">=", 0.5),
        ))
    per_record = 1e6 / Stats.of(samples["ours"]["both"]).median
    floor = 1e6 / Stats.of(samples["base"]["both"]).median
    result.note(f"per record: ours {per_record:.1f} µs, direct AESGCM {floor:.1f} µs "
                "(encrypt + decrypt)")
    return result
