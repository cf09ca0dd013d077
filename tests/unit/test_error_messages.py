"""Validation messages name what failed, never a value, and never a key the caller made
up: an unexpected key can be anything a form passed through (a name, an NHS number)."""

from __future__ import annotations

import pytest

from mizaic_processor import ContactDetails, InvalidInputError, RetentionRule

SECRET_KEY = "Aurelia Quenby, NHS 943 476 5919, DOB 1980-01-01"


@pytest.mark.parametrize(
    "build",
    [
        lambda: ContactDetails(**{"email": "a@b.org", SECRET_KEY: "x"}),
        lambda: ContactDetails(**{"email": "a@b.org", "nhs_9434765919": "x"}),
        lambda: RetentionRule(clauses=({"kind": "indefinite"},), **{SECRET_KEY: 1}),
        lambda: RetentionRule(
            clauses=({"kind": "after_events", "period": "P8Y", "events": ["x"], SECRET_KEY: 1},)
        ),
    ],
    ids=["contact-long-key", "contact-nhs-key", "rule-key", "clause-key"],
)
def test_an_unexpected_key_is_refused_without_being_named(build: object) -> None:
    with pytest.raises(InvalidInputError) as caught:
        build()  # type: ignore[operator]
    message = str(caught.value)
    assert "unexpected field" in message
    for part in ("Aurelia", "9434765919", "943 476 5919", "1980"):
        assert part not in message
    assert len(message) < 200
