"""The webhook adapter: the only module that sends HTTP to a controller's endpoint.

A notification is POSTed as JSON with three headers a receiver checks:

``X-Mizaic-Delivery``   the delivery id (the same on every retry)
``X-Mizaic-Timestamp``  unix seconds when this attempt was signed
``X-Mizaic-Signature``  ``v1=<hex HMAC-SHA256(secret, b"<timestamp>." + body)>``

The signature covers the timestamp and the body only: a receiver de-duplicates on the
body's ``delivery_id`` and acts on the body's ``type``, not on the unsigned
``X-Mizaic-Delivery`` and ``X-Mizaic-Event`` headers.

:func:`verify_webhook` is what a receiver calls. Redirects are never followed (a 3xx is a
failed attempt) and every call has a timeout on each network wait and a deadline for the
whole attempt (an endpoint that trickles its answer a byte at a time is cut off at the
deadline). Only ``https`` URLs are accepted, except ``http`` to a loopback host (local
tests).
"""

from __future__ import annotations

import contextlib
import datetime as dt
import hashlib
import hmac
import http.client
import ipaddress
import math
import socket
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Mapping
from email.message import Message
from typing import IO, Any

from mizaic_processor._validation import real_number
from mizaic_processor.errors import IntegrityError, InvalidInputError

__all__ = [
    "DELIVERY_HEADER",
    "SIGNATURE_HEADER",
    "TIMESTAMP_HEADER",
    "WebhookFailed",
    "check_webhook_url",
    "post",
    "sign",
    "verify_webhook",
]

DELIVERY_HEADER = "X-Mizaic-Delivery"
TIMESTAMP_HEADER = "X-Mizaic-Timestamp"
SIGNATURE_HEADER = "X-Mizaic-Signature"
EVENT_HEADER = "X-Mizaic-Event"
_SCHEME = "v1"
_LOOPBACK_NAMES = frozenset({"localhost"})
_MAX_URL = 2048
_MAX_RESPONSE = 64 * 1024
_MAX_TOLERANCE = 86400


def check_webhook_url(url: object) -> str:
    """Accept an ``https`` URL, or ``http`` to ``localhost`` / a loopback address.

    :raises InvalidInputError: for anything else (other schemes, credentials in the URL,
        a fragment, no host, over 2048 characters).
    """
    if not isinstance(url, str) or not 0 < len(url) <= _MAX_URL or not url.isprintable():
        raise InvalidInputError("invalid webhook URL")
    try:
        parts = urllib.parse.urlsplit(url)
        host = parts.hostname
        _ = parts.port
    except ValueError:
        raise InvalidInputError("invalid webhook URL") from None
    if not host or parts.username is not None or parts.password is not None or parts.fragment:
        raise InvalidInputError("invalid webhook URL")
    if any(c.isspace() for c in url):
        raise InvalidInputError("invalid webhook URL")
    if parts.scheme == "https":
        return url
    if parts.scheme == "http" and _is_loopback(host):
        return url
    raise InvalidInputError("a webhook URL must be https (http only to a loopback host)")


def _is_loopback(host: str) -> bool:
    if host.lower() in _LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _key(secret: str | bytes) -> bytes:
    if isinstance(secret, str):
        try:
            secret = secret.encode("utf-8")
        except UnicodeEncodeError:  # a lone surrogate
            raise InvalidInputError("a webhook secret must be UTF-8 text or bytes") from None
    if not isinstance(secret, bytes) or not secret:
        raise InvalidInputError("a webhook secret is required")
    return secret


def sign(secret: str | bytes, body: bytes, timestamp: int) -> str:
    """The ``X-Mizaic-Signature`` value for ``body`` sent at ``timestamp`` (unix seconds).

    :raises InvalidInputError: if the secret is empty.
    """
    mac = hmac.new(_key(secret), f"{timestamp}.".encode("ascii") + body, hashlib.sha256)
    return f"{_SCHEME}={mac.hexdigest()}"


def _header(headers: Mapping[str, str] | Message, name: str) -> str | None:
    wanted = name.lower()
    for key, value in headers.items():
        if isinstance(key, str) and key.lower() == wanted:
            return str(value)
    return None


def verify_webhook(
    secret: str | bytes,
    body: bytes,
    headers: Mapping[str, str] | Message,
    *,
    now: dt.datetime | float,
    tolerance: int = 300,
) -> None:
    """Check a received notification's signature and freshness; raise if it fails.

    Call it with the raw request body (before parsing it) and the request's headers.
    ``X-Mizaic-Signature`` may carry several comma-separated ``v1=`` values (a secret
    being rotated): one matching is enough.

    :param secret: the route's webhook secret.
    :param body: the raw request body.
    :param headers: the request headers (any mapping; names are matched case-insensitively).
    :param now: the receiver's current time (aware datetime, or unix seconds).
    :param tolerance: how many seconds the timestamp may be away from ``now`` (0 to
        86400).
    :raises IntegrityError: if a header is missing or malformed, the signature does not
        match the body, or the timestamp is more than ``tolerance`` seconds from ``now``.
    :raises InvalidInputError: if the secret is empty, ``now`` is a naive datetime or not
        a finite number, ``tolerance`` is out of range, or ``body`` or ``headers`` are of
        the wrong type.
    """
    key = _key(secret)
    if isinstance(now, dt.datetime):
        if now.tzinfo is None or now.utcoffset() is None:
            raise InvalidInputError("now must be timezone-aware")
        current = now.timestamp()
    elif isinstance(now, int | float) and not isinstance(now, bool):
        try:
            current = float(now)
        except OverflowError:
            current = math.inf
    else:
        raise InvalidInputError("now must be a datetime or unix seconds")
    # NaN compares false with everything: a NaN now or tolerance would pass any timestamp
    if not math.isfinite(current):
        raise InvalidInputError("now must be a finite number of unix seconds")
    real_number(tolerance, 0, _MAX_TOLERANCE, "tolerance must be 0 to 86400 seconds")
    if not isinstance(body, bytes | bytearray):
        raise InvalidInputError("body must be bytes")
    if not callable(getattr(headers, "items", None)):  # a mapping, Message, wsgiref Headers
        raise InvalidInputError("headers must be a mapping")
    stamp = _header(headers, TIMESTAMP_HEADER)
    given = _header(headers, SIGNATURE_HEADER)
    if stamp is None or given is None or not stamp.isascii() or not stamp.isdigit():
        raise IntegrityError("webhook signature missing or malformed")
    if len(stamp) > 12:
        raise IntegrityError("webhook signature missing or malformed")
    timestamp = int(stamp)
    expected = sign(key, bytes(body), timestamp)
    matched = False
    for candidate in given.split(","):
        if hmac.compare_digest(candidate.strip().encode("ascii", "replace"), expected.encode()):
            matched = True
    if not matched:
        raise IntegrityError("webhook signature does not match")
    if abs(current - timestamp) > tolerance:
        raise IntegrityError("webhook timestamp outside the tolerance")


class WebhookFailed(Exception):  # noqa: N818 - internal signal, never leaves the library
    """One delivery attempt failed. ``code`` is a short, data-free reason."""

    def __init__(self, code: str) -> None:
        super().__init__(code)
        self.code = code


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(
        self, req: urllib.request.Request, fp: IO[bytes], code: int, msg: str,
        headers: Message, newurl: str,
    ) -> urllib.request.Request | None:
        return None


class _Deadline:
    """The sockets of one attempt, shut down from a watcher thread at the deadline.

    A per-read timeout alone does not bound an attempt: an endpoint that sends one byte
    of its answer every few seconds never lets a read time out. Shutting the connection
    down wakes the blocked read, which then fails like a dropped connection.

    The watcher holds a duplicate of each socket the attempt connects: the same TCP
    connection, but its own descriptor, so it can still be shut down while TLS has
    detached the original (the handshake) and after ``http.client`` has let go of it (the
    body), and no ``SSLSocket`` is touched from another thread. Name resolution runs in a
    helper thread that the attempt waits for at most the time left (a resolver cannot be
    interrupted; a stuck one is abandoned, and ends with its own timeout), and each
    address is then given at most the time left to connect.
    """

    def __init__(self, seconds: float) -> None:
        self._socks: list[socket.socket] = []
        self._lock = threading.Lock()
        self._done = threading.Event()
        self._seconds = seconds
        self._ends = 0.0  # set when the attempt starts (__enter__)

    def track(self, make: Any) -> Any:
        def connection(*args: Any, **kwargs: Any) -> http.client.HTTPConnection:
            made: http.client.HTTPConnection = make(*args, **kwargs)

            def create_connection(address: Any, timeout: Any = None, *rest: Any) -> socket.socket:
                each = timeout if isinstance(timeout, int | float) else None
                sock = self._connect(address, each, rest)
                sock.settimeout(each)  # the connect had at most the time left
                with self._lock:
                    if self._done.is_set():
                        return sock
                    self._socks.append(sock.dup())
                return sock

            made._create_connection = create_connection  # type: ignore[attr-defined]
            return made
        return connection

    def _left(self) -> float:
        left = self._ends - time.monotonic()
        if left <= 0:
            raise TimeoutError("webhook deadline")
        return left

    def _connect(self, address: Any, each: float | None, rest: tuple[Any, ...]
                 ) -> socket.socket:
        """``socket.create_connection``, with the name resolved within the time left and
        each address then given at most the time left to connect. The resolved address
        is connected to as it is (an IPv6 scope id included)."""
        source = rest[0] if rest else None
        failure: OSError = OSError("no address to connect to")
        for family, kind, proto, _name, sockaddr in _resolve(address[0], address[1],
                                                             self._left()):
            left = self._left()
            sock = socket.socket(family, kind, proto)
            try:
                sock.settimeout(left if each is None or each > left else each)
                if source:
                    sock.bind(source)
                sock.connect(sockaddr)
            except OSError as exc:
                sock.close()
                failure = exc
                continue
            return sock
        raise failure

    def __enter__(self) -> _Deadline:
        self._ends = time.monotonic() + self._seconds
        try:
            threading.Thread(target=self._watch, name="mizaic-webhook-deadline",
                             daemon=True).start()
        except RuntimeError:  # no thread to be had: no attempt without its deadline
            raise WebhookFailed("unreachable") from None
        return self

    def __exit__(self, *exc: object) -> None:
        with self._lock:
            self._done.set()
            for sock in self._socks:
                sock.close()
            self._socks.clear()

    @property
    def passed(self) -> bool:
        # by the clock, not by the watcher: a read's own timeout can fire just before it
        return time.monotonic() >= self._ends

    def _watch(self) -> None:
        if self._done.wait(self._seconds):
            return
        while True:  # a socket may still be connecting: keep shutting down until done
            with self._lock:
                if self._done.is_set():
                    return
                for sock in self._socks:
                    with contextlib.suppress(OSError):
                        sock.shutdown(socket.SHUT_RDWR)
            if self._done.wait(0.2):
                return


def _resolve(host: str, port: int, seconds: float) -> list[Any]:
    """``socket.getaddrinfo`` for a TCP connection, waited for at most ``seconds``.

    :raises TimeoutError: if the resolver has not answered by then (its thread is left
        to finish on its own).
    :raises OSError: if the name does not resolve.
    """
    found: list[Any] = []
    answered = threading.Event()

    def run() -> None:
        try:
            found.append(socket.getaddrinfo(host, port, 0, socket.SOCK_STREAM))
        except OSError as exc:
            found.append(exc)
        except BaseException:  # anything else, e.g. a name IDNA cannot encode
            found.append(OSError("the webhook host name does not resolve"))
        finally:
            answered.set()

    try:
        threading.Thread(target=run, name="mizaic-webhook-resolve", daemon=True).start()
    except RuntimeError:  # no thread to be had
        raise OSError("cannot resolve the webhook host now") from None
    if not answered.wait(seconds):
        raise TimeoutError("webhook deadline")
    if not found or isinstance(found[0], OSError):
        raise found[0] if found else OSError("the webhook host name does not resolve")
    result: list[Any] = found[0]
    return result


class _Tracking(urllib.request.AbstractHTTPHandler):
    """A handler whose every connection is watched by the attempt's deadline."""

    deadline: _Deadline

    def do_open(self, http_class: Any, req: urllib.request.Request, **kwargs: Any) -> Any:
        return super().do_open(self.deadline.track(http_class), req, **kwargs)


class _TrackedHTTP(_Tracking, urllib.request.HTTPHandler):
    pass


class _TrackedHTTPS(_Tracking, urllib.request.HTTPSHandler):
    pass


def post(
    url: str,
    body: bytes,
    *,
    secret: str | bytes,
    delivery_id: str,
    event: str,
    timestamp: int,
    timeout: float = 10.0,
    deadline: float = 30.0,
) -> int:
    """POST one signed notification; return the HTTP status (2xx only).

    :param timeout: seconds for each network wait (connect, each read).
    :param deadline: seconds for the whole attempt, answer included.
    :raises WebhookFailed: on a non-2xx answer, a redirect, a timeout (``timeout`` or
        ``deadline``) or a network error.
    """
    url = check_webhook_url(url)
    headers = {
        "Content-Type": "application/json",
        "User-Agent": "mizaic-processor",
        DELIVERY_HEADER: delivery_id,
        EVENT_HEADER: event,
        TIMESTAMP_HEADER: str(timestamp),
        SIGNATURE_HEADER: sign(secret, body, timestamp),
    }
    request = urllib.request.Request(url, data=body, headers=headers, method="POST")  # noqa: S310
    with _Deadline(deadline) as limit:
        handlers: list[_Tracking] = [_TrackedHTTP(), _TrackedHTTPS()]
        for handler in handlers:
            handler.deadline = limit
        # plain http goes only to this machine (check_webhook_url): never through a proxy,
        # which would carry the notification off the machine unencrypted
        plain = urllib.parse.urlsplit(url).scheme == "http"
        proxies = urllib.request.ProxyHandler({} if plain else None)
        opener = urllib.request.build_opener(_NoRedirect(), proxies, *handlers)
        try:
            status = _answer(opener, request, timeout)
        except WebhookFailed:
            if not limit.passed:
                raise
        # past the deadline it is a timeout, whatever failed, and even if what was read
        # before the socket was shut parses as a complete answer
        if limit.passed:
            raise WebhookFailed("timeout") from None
    return status


def _answer(opener: urllib.request.OpenerDirector, request: urllib.request.Request,
            timeout: float) -> int:
    try:
        response: Any = opener.open(request, timeout=timeout)
    except urllib.error.HTTPError as exc:
        exc.close()
        raise WebhookFailed(f"http-{exc.code}") from None
    except TimeoutError:
        raise WebhookFailed("timeout") from None
    except urllib.error.URLError as exc:  # urllib wraps a connect or handshake timeout
        raise WebhookFailed(
            "timeout" if isinstance(exc.reason, TimeoutError) else "unreachable"
        ) from None
    except (http.client.HTTPException, OSError, ValueError):
        raise WebhookFailed("unreachable") from None
    try:
        with response:
            status = int(response.status)
            response.read(_MAX_RESPONSE)
    except (http.client.HTTPException, OSError, ValueError):
        raise WebhookFailed("unreachable") from None
    if not 200 <= status < 300:
        raise WebhookFailed(f"http-{status}")
    return status
