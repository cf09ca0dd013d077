"""Pydantic validation errors as messages that name what failed, never a value."""

from __future__ import annotations

from pydantic import ValidationError

from mizaic_processor.errors import InvalidInputError


def describe_validation_error(exc: ValidationError) -> str:
    """Summarise a pydantic error by location and error type only, never the input value."""
    parts = []
    for err in exc.errors(include_input=False, include_url=False)[:5]:
        # Only the top-level parameter: deeper locations are the caller's own keys
        # (field names, nested JSON keys), which can be clinical.
        loc = str(err["loc"][0]) if err["loc"] else "input"
        kind = str(err.get("type", "invalid"))
        cause = (err.get("ctx") or {}).get("error")
        if kind == "extra_forbidden":
            # the location of an unexpected field is the caller's own key (a contact
            # details form passed through whole, say), which can be anything
            parts.append("unexpected field")
        elif isinstance(cause, InvalidInputError):
            # a nested model's own validation: its message already names fields only
            detail = str(cause).removeprefix("invalid input: ")
            parts.append(detail if not err["loc"] else f"{loc}: {detail}")
        else:
            kind = "invalid value" if kind == "value_error" else kind.replace("_", " ")
            parts.append(f"{loc}: {kind}")
    return "invalid input: " + "; ".join(dict.fromkeys(parts))
