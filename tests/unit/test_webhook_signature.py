"""Webhook signing and verification, URL rules and other pure pieces of request routing."""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
from wsgiref.headers import Headers as WsgiHeaders

import pytest

from mizaic_processor import (
    ContactDetails,
    IntegrityError,
    InvalidInputError,
    WebhookRoute,
    verify_webhook,
)
from mizaic_processor._azure.queue import queue_endpoint
from mizaic_processor._controller_requests import subject_in
from mizaic_processor._routing import delivery_id, notification
from mizaic_processor._webhook import check_webhook_url, sign
from mizaic_processor.errors import ConfigurationError

SECRET = "whsec-0123456789abcdef0123456789abcdef"
BODY = b'{"type":"request.received","request_id":"qaaaaaaaaaaaaaaaaaaaaaaaaaa"}'
TS = 1_772_445_600  # 2026-03-02T10:00:00Z


def headers(body: bytes = BODY, ts: int = TS, secret: str = SECRET) -> dict[str, str]:
    return {"X-Mizaic-Timestamp": str(ts), "X-Mizaic-Signature": sign(secret, body, ts),
            "X-Mizaic-Delivery": "daaaaaaaaaaaaaaaaaaaaaaaaaa"}


def test_the_signature_is_hmac_sha256_over_timestamp_dot_body() -> None:
    expected = hmac.new(SECRET.encode(), f"{TS}.".encode() + BODY, hashlib.sha256).hexdigest()
    assert sign(SECRET, BODY, TS) == f"v1={expected}"
    assert sign(SECRET.encode(), BODY, TS) == sign(SECRET, BODY, TS)


def test_a_fresh_signature_verifies_with_any_header_case_and_a_rotating_secret() -> None:
    verify_webhook(SECRET, BODY, headers(), now=TS)
    verify_webhook(SECRET, BODY, headers(), now=dt.datetime.fromtimestamp(TS + 299, dt.UTC))
    lower = {k.lower(): v for k, v in headers().items()}
    verify_webhook(SECRET, BODY, lower, now=TS)
    both = headers()
    both["X-Mizaic-Signature"] = "v1=00ff, " + both["X-Mizaic-Signature"]
    verify_webhook(SECRET, BODY, both, now=TS)


@pytest.mark.parametrize(
    ("body", "hdrs", "now"),
    [
        pytest.param(BODY + b" ", headers(), TS, id="tampered-body"),
        pytest.param(BODY, headers(), TS + 301, id="too-old"),
        pytest.param(BODY, headers(), TS - 301, id="from-the-future"),
        pytest.param(BODY, headers(secret="another-secret-0123456789abcdef"), TS,
                     id="other-secret"),
        pytest.param(BODY, {**headers(), "X-Mizaic-Timestamp": str(TS + 1)}, TS,
                     id="restamped"),
        pytest.param(BODY, {"X-Mizaic-Timestamp": str(TS)}, TS, id="no-signature"),
        pytest.param(BODY, {"X-Mizaic-Signature": sign(SECRET, BODY, TS)}, TS,
                     id="no-timestamp"),
        pytest.param(BODY, {**headers(), "X-Mizaic-Timestamp": "-5"}, TS, id="bad-timestamp"),
        pytest.param(BODY, {**headers(), "X-Mizaic-Signature": "v0=abc"}, TS, id="bad-scheme"),
    ],
)
def test_a_bad_or_stale_notification_raises(body: bytes, hdrs: dict[str, str], now: int) -> None:
    with pytest.raises(IntegrityError):
        verify_webhook(SECRET, body, hdrs, now=now)


def test_verify_refuses_a_naive_now_and_an_empty_secret() -> None:
    with pytest.raises(InvalidInputError):
        verify_webhook(SECRET, BODY, headers(), now=dt.datetime(2026, 3, 2, 10))
    with pytest.raises(InvalidInputError):
        verify_webhook("", BODY, headers(), now=TS)


STALE = TS + 10**9  # a notification signed 30 years before "now"


@pytest.mark.parametrize(
    "kwargs",
    [
        {"now": float("nan")}, {"now": float("inf")}, {"now": -float("inf")},
        {"now": 10**400}, {"now": STALE, "tolerance": float("nan")},
        {"now": STALE, "tolerance": float("inf")}, {"now": STALE, "tolerance": 10**9},
        {"now": TS, "tolerance": -1}, {"now": TS, "tolerance": "300"},
        {"now": TS, "tolerance": True},
    ],
    ids=["now-nan", "now-inf", "now-minus-inf", "now-huge", "tolerance-nan", "tolerance-inf",
         "tolerance-huge", "tolerance-negative", "tolerance-str", "tolerance-bool"],
)
def test_a_now_or_tolerance_that_would_skip_the_freshness_check_is_refused(
    kwargs: dict[str, object],
) -> None:
    # NaN compares false with everything: before, a NaN now or tolerance (or an infinite
    # tolerance) let a notification signed decades ago through as fresh
    with pytest.raises(InvalidInputError):
        verify_webhook(SECRET, BODY, headers(), **kwargs)  # type: ignore[arg-type]


@pytest.mark.parametrize("hdrs", [None, [("X-Mizaic-Timestamp", str(TS))], "headers"])
def test_headers_that_are_not_a_mapping_are_invalid_input(hdrs: object) -> None:
    with pytest.raises(InvalidInputError):
        verify_webhook(SECRET, BODY, hdrs, now=TS)  # type: ignore[arg-type]


def test_header_objects_that_are_not_registered_mappings_still_verify() -> None:
    # wsgiref's (and older werkzeug's) Headers have items() but are not Mappings
    verify_webhook(SECRET, BODY, WsgiHeaders(list(headers().items())), now=TS)


def test_a_secret_that_is_not_utf8_text_is_invalid_input_not_a_unicode_error() -> None:
    with pytest.raises(InvalidInputError) as caught:
        verify_webhook(SECRET + "\ud800", BODY, headers(), now=TS)
    assert "\ud800" not in str(caught.value)
    with pytest.raises(InvalidInputError):
        sign("s" * 40 + "\udfff", BODY, TS)


@pytest.mark.parametrize("bad", ["\ud800", "\x00", "\n", "\u200b"],
                         ids=["lone-surrogate", "nul", "newline", "zero-width-space"])
def test_a_route_secret_must_be_printable_text(bad: str) -> None:
    # a lone surrogate used to be stored, and then every delivery to the controller (and
    # deliver_pending for all controllers) failed with UnicodeEncodeError when signing
    with pytest.raises(InvalidInputError) as caught:
        WebhookRoute(url="https://hooks.trust.example/h", secret=SECRET + bad)
    assert SECRET not in str(caught.value)
    WebhookRoute(url="https://hooks.trust.example/h", secret=SECRET + "-é€")  # non-ASCII is fine


@pytest.mark.parametrize("url", [
    "https://hooks.trust.example/mizaic", "https://10.0.0.5:8443/x", "http://127.0.0.1:8080/x",
    "http://localhost/x", "http://[::1]:9000/x",
])
def test_https_or_loopback_http_urls_are_accepted(url: str) -> None:
    assert check_webhook_url(url) == url


@pytest.mark.parametrize("url", [
    "http://hooks.trust.example/x", "ftp://hooks.trust.example/x", "https://u:p@host/x",
    "https://host/x#frag", "https:///x", "https://host/ x", "https://host:99999/x", "",
    "https://" + "a" * 2050,
])
def test_other_urls_are_refused(url: str) -> None:
    with pytest.raises(InvalidInputError):
        check_webhook_url(url)


def test_the_queue_endpoint_is_derived_from_the_blob_endpoint() -> None:
    assert queue_endpoint("https://acct.blob.core.windows.net") == (
        "https://acct.queue.core.windows.net"
    )
    with pytest.raises(ConfigurationError):
        queue_endpoint("http://127.0.0.1:10000/devstoreaccount1")


def test_delivery_ids_are_deterministic_opaque_ids() -> None:
    first = delivery_id("rj1", "qabc", "received")
    assert first == delivery_id("rj1", "qabc", "received")
    assert first != delivery_id("rj1", "qabc", "reminder/2026-03-02")
    assert first[0] == "d" and len(first) == 27
    note = notification("request.received", first, "rj1", dt.datetime(2026, 3, 2, tzinfo=dt.UTC),
                        request_id="qabc")
    assert note["delivery_id"] == first and note["type"] == "request.received"
    with pytest.raises(ValueError):
        notification("request.answered", first, "rj1", dt.datetime.now(dt.UTC))


@pytest.mark.parametrize(("given", "found"), [
    ("9434765919", True), ("943 476 5919", True), ("NHS number: 943-476-5919", True),
    ("nhs 9434765919", True), ("9434765918", False), ("Jane Doe 1/1/70", False),
    ("MRN K123456", False),
])
def test_a_plain_nhs_number_is_recognised_in_the_subject_as_given(given: str, found: bool) -> None:
    assert (subject_in(given) is not None) is found


def test_contact_details_need_a_way_to_reach_the_requester_and_never_print() -> None:
    with pytest.raises(InvalidInputError) as caught:
        ContactDetails(name="Aurelia Quenby", email="aurelia@@example")
    assert "Aurelia" not in str(caught.value) and "aurelia" not in str(caught.value)
    with pytest.raises(InvalidInputError):
        ContactDetails(name="Aurelia Quenby")
    contact = ContactDetails(name="Aurelia Quenby", phone="+44 113 496 0000")
    assert "Aurelia" not in repr(contact) and "496" not in str(contact)
