"""Webhooks: a signed POST to the address that passed the check, over HTTPS outside local development.

The worker posts them, so a webhook must not become a way into the internal network. Checking
the address a name resolves to and then letting an HTTP client resolve the name again to connect
is not enough: the DNS answer can change in between (DNS rebinding), the check sees a public
address and the connection goes to 127.0.0.1 or a cloud metadata service. So the name is
resolved once (`webhook_target_check`), every address of the answer is checked, and the
connection goes to those checked addresses (`PinnedHTTPConnection`, `PinnedHTTPSConnection`)
while the Host header, TLS SNI and the certificate's verification use the URL's host name.
A redirect is never followed (http.client does not follow them): a 3xx is a failure.

Each POST is signed, as Stripe and GitHub sign theirs, with the secret of what it is about
(a budget's): `X-Octotrace-Timestamp` is the Unix time of the attempt, and
`X-Octotrace-Signature` is `sha256=` and the hex HMAC-SHA256, keyed with the secret, of the
timestamp, a dot, and the exact body bytes. docs/reports.md shows how a receiver verifies it.
"""

from __future__ import annotations

import hashlib
import hmac
import http.client
import ipaddress
import secrets
import socket
import ssl
import time
from dataclasses import dataclass
from datetime import datetime
from urllib.parse import SplitResult, urlsplit

from django.conf import settings

TIMESTAMP_HEADER = "X-Octotrace-Timestamp"
SIGNATURE_HEADER = "X-Octotrace-Signature"
SECRET_PREFIX = "whsec_"
TIMEOUT_SECONDS = 10
# Answers worth another try; any other non-2xx answer is the webhook saying no.
RETRY_STATUSES = frozenset({408, 429, 500, 502, 503, 504})


class WebhookRefused(ValueError):
    """The webhook's URL is not allowed (not https outside local development, not a public
    address): nothing was sent."""


class WebhookRejected(ValueError):
    """The webhook answered with a status that another try would not change (a 3xx, a 4xx)."""


class WebhookUnavailable(OSError):
    """The webhook answered with a status worth another try (5xx, 408, 429). An OSError, like a
    connection that failed, so that the delivery task retries both."""


@dataclass(frozen=True, slots=True)
class WebhookTarget:
    """Where a webhook's POST goes: the URL's parts, and the addresses its host resolved to once,
    all checked, as (family, sockaddr) pairs to connect to."""

    scheme: str
    host: str
    port: int
    path: str
    addresses: tuple[tuple[int, tuple], ...]


def webhook_url_check(url: str) -> SplitResult:
    """Raise WebhookRefused when the URL is not one a webhook may have: http(s) with a host, and
    https only outside local development (OCTOTRACE_WEBHOOK_HTTPS_ONLY)."""
    parts = urlsplit(url)
    https_only = settings.OCTOTRACE_WEBHOOK_HTTPS_ONLY
    allowed = ("https",) if https_only else ("http", "https")
    try:
        parts.port  # noqa: B018 - raises ValueError on a port that is not a number in range
    except ValueError:
        raise WebhookRefused("the webhook URL has a bad port") from None
    if parts.scheme not in allowed or not parts.hostname:
        if https_only:
            raise WebhookRefused("the webhook must be an https:// URL (http:// is allowed in local development only)")
        raise WebhookRefused("the webhook must be an http:// or https:// URL")
    return parts


def address_is_public(address: ipaddress.IPv4Address | ipaddress.IPv6Address) -> bool:
    """False for loopback, private, link-local, reserved, shared (CGNAT) and multicast addresses,
    also when written as an IPv4-mapped IPv6 address (::ffff:127.0.0.1)."""
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    return address.is_global and not address.is_multicast


def webhook_target_check(url: str) -> WebhookTarget:
    """Resolve the webhook's host once and check every address of the answer; the target to
    connect to. Raises WebhookRefused when the URL is not allowed or an address is not public
    (unless OCTOTRACE_WEBHOOK_ALLOW_PRIVATE is on), OSError when the name does not resolve."""
    parts = webhook_url_check(url)
    host = parts.hostname or ""
    port = parts.port or (443 if parts.scheme == "https" else 80)
    addresses: list[tuple[int, tuple]] = []
    for family, _type, _proto, _canonname, sockaddr in socket.getaddrinfo(host, port, type=socket.SOCK_STREAM):
        if family not in (socket.AF_INET, socket.AF_INET6):
            continue
        address = ipaddress.ip_address(sockaddr[0])
        if not settings.OCTOTRACE_WEBHOOK_ALLOW_PRIVATE and not address_is_public(address):
            raise WebhookRefused(
                f"{host} resolves to {address}, which is not a public address "
                "(set OCTOTRACE_WEBHOOK_ALLOW_PRIVATE=1 to allow internal webhooks)"
            )
        addresses.append((family, sockaddr))
    if not addresses:
        raise WebhookRefused(f"{host} resolves to no IPv4 or IPv6 address")
    path = parts.path or "/"
    if parts.query:
        path = f"{path}?{parts.query}"
    return WebhookTarget(scheme=parts.scheme, host=host, port=port, path=path, addresses=tuple(addresses))


def connect_pinned(addresses: tuple[tuple[int, tuple], ...], timeout: float) -> socket.socket:
    """A TCP connection to the first of the checked addresses that answers, within `timeout` in
    all. Never resolves a name."""
    deadline = time.monotonic() + timeout
    error: OSError = OSError("no address to connect to")
    for family, sockaddr in addresses:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise TimeoutError(f"timed out connecting to {sockaddr[0]}")
        sock = socket.socket(family, socket.SOCK_STREAM)
        try:
            sock.settimeout(remaining)
            sock.connect(sockaddr)
        except OSError as exc:
            sock.close()
            error = exc
            continue
        sock.settimeout(timeout)
        return sock
    raise error


class PinnedHTTPConnection(http.client.HTTPConnection):
    """An HTTP connection to the target's checked addresses; the Host header names its host."""

    def __init__(self, target: WebhookTarget, *, timeout: float) -> None:
        super().__init__(target.host, target.port, timeout=timeout)
        self.addresses = target.addresses

    def connect(self) -> None:
        self.sock = connect_pinned(self.addresses, self.timeout)


class PinnedHTTPSConnection(http.client.HTTPSConnection):
    """An HTTPS connection to the target's checked addresses. TLS sends the host name (SNI) and
    verifies the server's certificate against it, with the system's CAs: what reached the
    address must also prove it is the host."""

    def __init__(self, target: WebhookTarget, *, timeout: float) -> None:
        # Built per connection, so that it reads the CAs as they are now (SSL_CERT_FILE included).
        self.tls = ssl.create_default_context()
        super().__init__(target.host, target.port, timeout=timeout, context=self.tls)
        self.addresses = target.addresses

    def connect(self) -> None:
        sock = connect_pinned(self.addresses, self.timeout)
        try:
            self.sock = self.tls.wrap_socket(sock, server_hostname=self.host)
        except BaseException:
            sock.close()
            raise


def webhook_secret_new() -> str:
    return SECRET_PREFIX + secrets.token_urlsafe(32)


def webhook_signature(*, secret: str, timestamp: str, body: bytes) -> str:
    """The X-Octotrace-Signature value: `sha256=` and the hex HMAC-SHA256 of `timestamp.body`."""
    digest = hmac.new(secret.encode(), timestamp.encode() + b"." + body, hashlib.sha256).hexdigest()
    return f"sha256={digest}"


def webhook_post(*, url: str, body: bytes, secret: str, now: datetime, user_agent: str) -> None:
    """POST the JSON `body` to the webhook, signed with `secret` at `now`, connecting only to the
    addresses checked. Raises WebhookRefused (not sent), WebhookRejected (a 3xx or 4xx answer),
    WebhookUnavailable (an answer worth another try) or another OSError (no connection, timeout)."""
    if not secret:
        raise WebhookRefused("the webhook has no signing secret: rotate it to issue one")
    target = webhook_target_check(url)
    timestamp = str(int(now.timestamp()))
    headers = {
        "Content-Type": "application/json",
        "User-Agent": user_agent,
        TIMESTAMP_HEADER: timestamp,
        SIGNATURE_HEADER: webhook_signature(secret=secret, timestamp=timestamp, body=body),
    }
    pinned = PinnedHTTPSConnection if target.scheme == "https" else PinnedHTTPConnection
    connection = pinned(target, timeout=TIMEOUT_SECONDS)
    try:
        connection.request("POST", target.path, body=body, headers=headers)
        response = connection.getresponse()
        status, reason = response.status, response.reason
    finally:
        connection.close()
    if status in RETRY_STATUSES:
        raise WebhookUnavailable(f"the webhook answered HTTP {status} {reason}")
    if not 200 <= status < 300:
        raise WebhookRejected(f"the webhook answered HTTP {status} {reason}")
