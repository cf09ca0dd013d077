"""The pure chain verifier names the first broken event exactly (DESIGN §7).

Chains of any length are built with the same encoding the writer uses; one tampering is
applied at any position; ``verify_chain`` (and ``verify_checkpoints`` for the tail) must
name that position and the kind of tampering.
"""

from __future__ import annotations

import json

from hypothesis import given
from hypothesis import strategies as st

from mizaic_processor._core import audit_chain

CHAIN = "w" + "q" * 26
KEY = bytes(range(32))


def build(length: int) -> list[bytes]:
    lines: list[bytes] = []
    prev = audit_chain.GENESIS
    for seq in range(1, length + 1):
        line = audit_chain.encode_event({
            "chain": CHAIN, "seq": seq, "prev": prev, "id": f"e{seq:026d}", "actor": "svc",
            "role": "service", "op": "record.read", "action": "R", "entity": "r" + "a" * 52,
            "outcome": "success", "purpose": "TREAT", "at": "2026-01-01T00:00:00+00:00",
        })
        lines.append(line)
        prev = audit_chain.line_hash(line)
    return lines


def sealed(lines: list[bytes]) -> dict[str, object]:
    body = audit_chain.checkpoint_body(
        CHAIN, len(lines), audit_chain.line_hash(lines[-1]), "2026-01-01T00:00:00+00:00"
    )
    return {"body": body, "sig": audit_chain.sign_checkpoint(KEY, body), "key_version": 1}


def check(lines: list[bytes], checkpoint: dict[str, object]) -> audit_chain.Break | None:
    head, broken = audit_chain.verify_chain(CHAIN, lines)
    if broken is not None:
        return broken
    hashes = {CHAIN: [audit_chain.line_hash(line) for line in lines]}
    return audit_chain.verify_checkpoints(lambda _cp: KEY, {CHAIN: head}, hashes, [checkpoint])


def alter(line: bytes) -> bytes:
    event = json.loads(line)
    event["actor"] = "someone-else"
    return audit_chain.encode_event(event)


lengths = st.integers(min_value=3, max_value=40)


@given(lengths)
def test_an_intact_sealed_chain_verifies(length: int) -> None:
    lines = build(length)
    assert check(lines, sealed(lines)) is None


@given(lengths, st.data())
def test_altering_any_event_is_named_altered_at_its_seq(length: int, data: st.DataObject) -> None:
    lines = build(length)
    checkpoint = sealed(lines)
    k = data.draw(st.integers(min_value=1, max_value=length))
    lines[k - 1] = alter(lines[k - 1])

    broken = check(lines, checkpoint)

    assert broken is not None and (broken.seq, broken.kind) == (k, "altered")


@given(lengths, st.data())
def test_removing_any_event_before_the_last_is_named_removed_at_its_seq(
    length: int, data: st.DataObject
) -> None:
    lines = build(length)
    checkpoint = sealed(lines)
    k = data.draw(st.integers(min_value=1, max_value=length - 1))
    del lines[k - 1]

    broken = check(lines, checkpoint)

    assert broken is not None and (broken.seq, broken.kind) == (k, "removed")


@given(lengths, st.data())
def test_cutting_the_sealed_tail_is_named_truncated_at_the_first_missing_seq(
    length: int, data: st.DataObject
) -> None:
    lines = build(length)
    checkpoint = sealed(lines)
    keep = data.draw(st.integers(min_value=1, max_value=length - 1))

    broken = check(lines[:keep], checkpoint)

    assert broken is not None and (broken.seq, broken.kind) == (keep + 1, "truncated")


@given(lengths, st.data())
def test_swapping_two_adjacent_events_is_detected_at_the_first_of_them(
    length: int, data: st.DataObject
) -> None:
    lines = build(length)
    checkpoint = sealed(lines)
    k = data.draw(st.integers(min_value=1, max_value=length - 1))
    lines[k - 1], lines[k] = lines[k], lines[k - 1]

    broken = check(lines, checkpoint)

    assert broken is not None and broken.seq == k


@given(lengths, st.data())
def test_swapping_two_adjacent_events_is_named_reordered(
    length: int, data: st.DataObject
) -> None:
    lines = build(length)
    k = data.draw(st.integers(min_value=1, max_value=length - 1))
    lines[k - 1], lines[k] = lines[k], lines[k - 1]

    _, broken = audit_chain.verify_chain(CHAIN, lines)

    assert broken is not None and (broken.seq, broken.kind) == (k, "reordered")


@given(lengths, st.data())
def test_a_well_linked_forged_event_inserted_anywhere_before_the_head_is_named_inserted(
    length: int, data: st.DataObject
) -> None:
    lines = build(length)
    checkpoint = sealed(lines)
    k = data.draw(st.integers(min_value=1, max_value=length - 1))  # after event k
    forged = build(length)[k]  # a copy of event k+1 ...
    forged = alter(forged)  # ... with another actor, still linked to event k
    lines.insert(k, forged)

    broken = check(lines, checkpoint)

    assert broken is not None and broken.kind == "inserted"


def test_a_checkpoint_signed_with_another_key_is_named_forged_checkpoint() -> None:
    lines = build(5)
    checkpoint = sealed(lines)
    body = checkpoint["body"]
    assert isinstance(body, dict)
    checkpoint["sig"] = audit_chain.sign_checkpoint(b"k" * 32, body)

    broken = check(lines, checkpoint)

    assert broken is not None and (broken.seq, broken.kind) == (5, "forged checkpoint")
