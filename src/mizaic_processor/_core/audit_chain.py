"""The audit hash chain and its checkpoints. Pure: lines in, verdicts out.

A controller's trail is a set of *chains*, one per writer (a process's audit writer for
that controller), so concurrent writers never contend for, fork or corrupt one chain.
Each chain is a sequence of JSON lines::

    {"chain": <writer id>, "seq": 1, "prev": <hex sha256 of the previous line, or
     64 zeros>, "at": ..., "actor": ..., "role": ..., "action": "C|R|U|D|E",
     "op": "record.create", "entity": <opaque id>, "outcome": "success", ...}

The hash of an event is SHA-256 of its exact line bytes. Each line carries the hash of
the previous line, so altering, removing, reordering or inserting an event breaks the
chain at that point. A *checkpoint* seals a chain's head (its sequence number and hash)
with an HMAC under the controller's audit key; checkpoints are also delivered to the
controller, so truncating a chain's tail or deleting a whole chain cannot go unnoticed.

The verification here uses only the standard library (``hashlib``, ``hmac``, ``json``)
so that the controller's offline verifier can be the same algorithm.
"""

from __future__ import annotations

import hashlib
import hmac
import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

GENESIS = "0" * 64
ACTIONS = frozenset({"C", "R", "U", "D", "E"})


def encode_event(event: Mapping[str, Any]) -> bytes:
    """The canonical line of an event (sorted keys, compact, UTF-8, no newline)."""
    return json.dumps(event, separators=(",", ":"), sort_keys=True, ensure_ascii=True).encode()


def line_hash(line: bytes) -> str:
    """The hash of an event: hex SHA-256 of its exact line bytes."""
    return hashlib.sha256(line).hexdigest()


def checkpoint_body(
    chain: str, seq: int, head: str, at: str, *, final: bool = False
) -> dict[str, Any]:
    """The signed part of a checkpoint. Seq 0 (head = 64 zeros) is a chain's genesis
    seal, written before its first event; ``final`` marks the seal of a closed chain,
    after which no event may follow."""
    return {"kind": "mizaic.audit-checkpoint", "v": 1, "chain": chain, "seq": seq,
            "head": head, "at": at, "final": final}


def sign_checkpoint(key: bytes, body: Mapping[str, Any]) -> str:
    """HMAC-SHA256 of the checkpoint body under the controller's audit key."""
    return hmac.new(key, encode_event(body), hashlib.sha256).hexdigest()


@dataclass(frozen=True)
class Break:
    """Where and how a trail is broken: the chain, the position (1-based line number in
    the chain as stored) and the sequence number expected there, and the kind."""

    chain: str
    position: int
    seq: int
    kind: str

    def describe(self) -> str:
        return f"chain {self.chain}: event #{self.seq} (line {self.position}): {self.kind}"


@dataclass(frozen=True)
class ChainHead:
    """A verified chain's last event."""

    chain: str
    seq: int
    head: str


def verify_chain(chain: str, lines: Sequence[bytes]) -> tuple[ChainHead, Break | None]:
    """Walk one chain's lines; return its verified head and the first break, if any.

    Kinds of break: ``malformed`` (not an event of this chain), ``altered`` (the next
    event's ``prev`` does not match this event's hash), ``removed`` (a sequence number
    missing from the chain), ``reordered`` (events out of sequence order), ``inserted``
    (a repeated sequence number: an extra event, named by that number).
    """
    prev = GENESIS
    expected = 1
    head = ChainHead(chain, 0, GENESIS)
    seqs: list[int | None] = []
    for line in lines:
        try:
            found = json.loads(line).get("seq")
            seqs.append(found if isinstance(found, int) else None)
        except (ValueError, AttributeError):
            seqs.append(None)
    for position, line in enumerate(lines, start=1):
        try:
            event = json.loads(line)
            seq = event["seq"]
            ok = (
                isinstance(event, dict)
                and event.get("chain") == chain
                and isinstance(seq, int)
                and isinstance(event.get("prev"), str)
                and encode_event(event) == line
            )
        except (ValueError, KeyError, TypeError):
            ok = False
        if not ok:
            return head, Break(chain, position, expected, "malformed")
        if seq > expected:
            later = expected in seqs[position:]
            return head, Break(chain, position, expected, "reordered" if later else "removed")
        if seq < expected:
            if seq == expected - 1:
                return head, Break(chain, position, seq, "inserted")
            return head, Break(chain, position, expected, "reordered")
        if event["prev"] != prev:
            # the event before this one no longer hashes to what this one recorded
            kind = "altered" if position > 1 else "inserted"
            return head, Break(chain, position - 1 if position > 1 else 1,
                               expected - 1 if position > 1 else 1, kind)
        prev = line_hash(line)
        head = ChainHead(chain, seq, prev)
        expected += 1
    return head, None


def verify_checkpoints(
    key_for: Any,
    heads: Mapping[str, ChainHead],
    hashes: Mapping[str, Sequence[str]],
    checkpoints: Iterable[Mapping[str, Any]],
) -> Break | None:
    """Check every checkpoint's HMAC and that its chain still holds the sealed event.

    :param key_for: a callable from a checkpoint to its HMAC key (``None`` if unknown),
        or ``None`` to skip the HMAC check (an offline verifier without the key compares
        the chain heads against checkpoints it received through a trusted channel).
    :param heads: verified heads per chain.
    :param hashes: per chain, the hash of each verified event (index = seq - 1).
    :returns: the first break found: ``forged checkpoint``, ``chain missing``,
        ``truncated`` (the chain ends before the sealed event) or ``altered`` (the sealed
        event's hash differs).
    """
    sealed: set[str] = set()
    for cp in checkpoints:
        body = cp.get("body")
        sig = cp.get("sig")
        if not isinstance(body, dict) or not isinstance(sig, str):
            return Break("?", 0, 0, "forged checkpoint")
        key = key_for(cp) if key_for is not None else b""
        if key is None or (
            key_for is not None and not hmac.compare_digest(sign_checkpoint(key, body), sig)
        ):
            return Break(str(body.get("chain")), 0, int(body.get("seq") or 0),
                         "forged checkpoint")
        chain = str(body["chain"])
        seq = int(body["seq"])
        sealed.add(chain)
        if chain not in heads:
            if seq == 0 and not body.get("final"):
                continue  # a genesis seal of a chain that never got its first event
            return Break(chain, 0, seq, "chain missing")
        if heads[chain].seq < seq:
            return Break(chain, heads[chain].seq + 1, heads[chain].seq + 1, "truncated")
        expected_head = GENESIS if seq == 0 else hashes[chain][seq - 1]
        if expected_head != body["head"]:
            return Break(chain, seq, seq, "altered")
        if body.get("final") is True and heads[chain].seq > seq:
            return Break(chain, seq + 1, seq + 1, "inserted")
    for chain in sorted(set(heads) - sealed):
        # every chain starts with a signed genesis seal: a chain without any seal was
        # not written by a holder of the controller's audit key
        return Break(chain, 1, 1, "unsealed chain")
    return None
