"""Budget webhooks (reports/webhooks.py, reports/budgets.py): the name is resolved once and the POST
goes to the address that passed the check (DNS rebinding reaches nothing private), https only
outside local development, each POST signed with the budget's secret, shown once.

The receiver is a real HTTP(S) server on 127.0.0.1 that records every connection. The network that
is not here is faked at the socket API our code calls: `socket.getaddrinfo` (DNS answers for
hooks.example.test) and `socket.socket.connect` (the internet: a public address is unreachable,
every attempt recorded). TLS uses a CA made for the test, trusted through SSL_CERT_FILE."""

from __future__ import annotations

import errno
import ipaddress
import json
import re
import socket
import ssl
import threading
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import SimpleNamespace

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from reports import budgets, tasks, webhooks
from reports.models import Budget, BudgetAlert
from tracer.models import AuditEvent

HOST = "hooks.example.test"
PUBLIC = "93.184.215.14"  # a public address; the fake internet below never reaches it
NOW = datetime(2026, 3, 2, 12, tzinfo=UTC)
DOCS = Path(__file__).resolve().parent.parent / "docs" / "reports.md"


class Hook:
    """A local HTTP server (HTTPS with `tls`) that records each connection, and each POST's headers
    and raw body; answers `statuses` in turn, then 200."""

    def __init__(self, tls: ssl.SSLContext | None = None) -> None:
        self.connections: list[tuple] = []
        self.requests: list[tuple[dict, bytes]] = []
        self.statuses: list[int] = []
        self.sni: list[str | None] = []
        hook = self

        class Handler(BaseHTTPRequestHandler):
            def setup(self) -> None:
                hook.connections.append(self.client_address)
                super().setup()

            def do_POST(self) -> None:  # noqa: N802 - the http.server protocol
                body = self.rfile.read(int(self.headers["Content-Length"]))
                hook.requests.append((dict(self.headers), body))
                self.send_response(hook.statuses.pop(0) if hook.statuses else 200)
                self.end_headers()

            def log_message(self, *args) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        if tls is not None:
            tls.sni_callback = lambda sock, name, context: self.sni.append(name)
            self.server.socket = tls.wrap_socket(self.server.socket, server_side=True)
        self.port = self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def url(self, scheme: str = "http") -> str:
        return f"{scheme}://{HOST}:{self.port}/hooks/budget"

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def hook() -> Iterator[Hook]:
    hook = Hook()
    yield hook
    hook.close()


class Network:
    """DNS and the internet as our code sees them. `answers`: what the resolver says for HOST on
    each question in turn (the last one again after that); a connection to a public address fails
    as unreachable (no packet leaves the machine); every question and connection is recorded."""

    def __init__(self, monkeypatch) -> None:
        self.answers: list[list[str]] = []
        self.questions: list[str] = []
        self.connects: list[tuple[str, int]] = []
        self.refuse_next = 0
        real_getaddrinfo = socket.getaddrinfo
        real_connect = socket.socket.connect
        network = self

        def getaddrinfo(host, port, family=0, type=0, proto=0, flags=0):  # noqa: A002 - socket's names
            if host != HOST:
                return real_getaddrinfo(host, port, family, type, proto, flags)
            network.questions.append(host)
            answer = network.answers.pop(0) if len(network.answers) > 1 else network.answers[0]
            out = []
            for address in answer:
                if ":" in address:
                    out.append((socket.AF_INET6, socket.SOCK_STREAM, 6, "", (address, port, 0, 0)))
                else:
                    out.append((socket.AF_INET, socket.SOCK_STREAM, 6, "", (address, port)))
            return out

        def connect(sock, address):
            if sock.family in (socket.AF_INET, socket.AF_INET6):
                network.connects.append((address[0], address[1]))
                if address[0] == PUBLIC:
                    raise OSError(errno.ENETUNREACH, "Network is unreachable (the test's internet)")
                if network.refuse_next:
                    network.refuse_next -= 1
                    raise ConnectionRefusedError(errno.ECONNREFUSED, "Connection refused (the test's network)")
            return real_connect(sock, address)

        monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)
        monkeypatch.setattr(socket.socket, "connect", connect)


@pytest.fixture
def network(monkeypatch) -> Network:
    return Network(monkeypatch)


@pytest.fixture
def production(settings) -> None:
    """Outside local development: private addresses refused, https only."""
    settings.OCTOTRACE_WEBHOOK_ALLOW_PRIVATE = False
    settings.OCTOTRACE_WEBHOOK_HTTPS_ONLY = True


def alert_for(project, url: str) -> BudgetAlert:
    budget = budgets.budget_set(project=project, period="daily", amount_usd="10", webhook_url=url)
    alert = budgets.alert_record(budget=budget, start=date(2026, 3, 2), threshold=90, spend=Decimal("9.12"), now=NOW)
    assert alert is not None
    return alert


def documented_verify(now: datetime):
    """The receiver's recipe from docs/reports.md ("Verifying a webhook"), run as written, on a
    clock set to `now`."""
    section = DOCS.read_text().split("### Verifying a webhook", 1)[1]
    code = re.search(r"```python\n(.*?)```", section, re.DOTALL).group(1)
    namespace: dict = {}
    exec(compile(code, str(DOCS), "exec"), namespace)  # noqa: S102 - our own documentation
    namespace["time"] = SimpleNamespace(time=lambda: now.timestamp())
    return namespace["octotrace_webhook_verify"]


# --- Pinned connections ----------------------------------------------------------------------


def test_a_name_that_rebinds_to_a_private_address_after_the_check_reaches_nothing_private(
    project_a, hook, network, production
) -> None:
    """The acceptance test: the resolver answers a public address at the check and 127.0.0.1 after
    it. A client that resolves again to connect would POST to the local server."""
    network.answers = [[PUBLIC], ["127.0.0.1"]]
    alert = alert_for(project_a, hook.url("https"))
    with pytest.raises(OSError, match="unreachable"):
        budgets.alert_deliver(alert_id=alert.pk, now=NOW)
    assert hook.connections == [] and hook.requests == []
    assert network.connects == [(PUBLIC, hook.port)]  # the checked address, and only it
    assert network.questions == [HOST]  # resolved once
    alert.refresh_from_db()
    assert alert.delivered_at is None and "unreachable" in alert.error


def test_every_address_of_the_answer_is_checked(project_a, hook, network, production) -> None:
    network.answers = [[PUBLIC, "10.0.0.5"]]
    alert = alert_for(project_a, hook.url("https"))
    with pytest.raises(webhooks.WebhookRefused, match="10.0.0.5, which is not a public address"):
        budgets.alert_deliver(alert_id=alert.pk, now=NOW)
    assert network.connects == [] and hook.connections == []


@pytest.mark.parametrize(
    "address", ["127.0.0.1", "10.1.2.3", "169.254.169.254", "100.64.0.1", "::1", "fe80::1", "::ffff:127.0.0.1"]
)
def test_loopback_private_link_local_and_mapped_addresses_are_refused(address) -> None:
    assert not webhooks.address_is_public(ipaddress.ip_address(address))


def test_the_pinned_connection_delivers_to_the_checked_address_with_the_hosts_name(project_a, hook, network) -> None:
    # Local development: private addresses allowed, so 127.0.0.1 passes the check.
    network.answers = [["127.0.0.1"], [PUBLIC]]
    alert = alert_for(project_a, hook.url())
    assert budgets.alert_deliver(alert_id=alert.pk, now=NOW) is True
    ((headers, body),) = hook.requests
    assert headers["Host"] == f"{HOST}:{hook.port}"
    assert json.loads(body)["threshold_percent"] == 90
    assert network.questions == [HOST] and network.connects == [("127.0.0.1", hook.port)]


@pytest.fixture
def tls(tmp_path, monkeypatch):
    """A CA trusted for the test (SSL_CERT_FILE, read by ssl.create_default_context), and server
    contexts with a certificate it signed for a given name."""
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "octotrace test CA")])
    start = datetime.now(UTC) - timedelta(days=1)
    ca = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(start)
        .not_valid_after(start + timedelta(days=7))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(ca_key, hashes.SHA256())
    )
    ca_file = tmp_path / "ca.pem"
    ca_file.write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    monkeypatch.setenv("SSL_CERT_FILE", str(ca_file))

    def server_context(name: str) -> ssl.SSLContext:
        key = ec.generate_private_key(ec.SECP256R1())
        cert = (
            x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)]))
            .issuer_name(ca_name)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(start)
            .not_valid_after(start + timedelta(days=7))
            .add_extension(x509.SubjectAlternativeName([x509.DNSName(name)]), critical=False)
            .sign(ca_key, hashes.SHA256())
        )
        pem = tmp_path / f"{name}.pem"
        pem.write_bytes(
            cert.public_bytes(serialization.Encoding.PEM)
            + key.private_bytes(
                serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
            )
        )
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(pem)
        return context

    return server_context


def test_https_sends_the_host_name_and_verifies_the_certificate_against_it(project_a, network, tls, settings) -> None:
    settings.OCTOTRACE_WEBHOOK_HTTPS_ONLY = True  # private addresses still allowed: the server is local
    network.answers = [["127.0.0.1"]]
    hook = Hook(tls=tls(HOST))
    try:
        alert = alert_for(project_a, hook.url("https"))
        assert budgets.alert_deliver(alert_id=alert.pk, now=NOW) is True
        assert hook.sni == [HOST] and len(hook.requests) == 1
        assert hook.requests[0][0]["Host"] == f"{HOST}:{hook.port}"
    finally:
        hook.close()


def test_https_refuses_a_certificate_for_another_name(project_a, network, tls, settings) -> None:
    settings.OCTOTRACE_WEBHOOK_HTTPS_ONLY = True
    network.answers = [["127.0.0.1"]]
    hook = Hook(tls=tls("other.example.test"))
    try:
        alert = alert_for(project_a, hook.url("https"))
        with pytest.raises(ssl.SSLCertVerificationError, match="Hostname mismatch"):
            budgets.alert_deliver(alert_id=alert.pk, now=NOW)
        assert hook.requests == []
    finally:
        hook.close()


# --- https only --------------------------------------------------------------------------------


def test_plain_http_is_refused_outside_local_development_when_saved(project_a, production, client, alice) -> None:
    with pytest.raises(budgets.BadBudget, match="https://"):
        budgets.budget_set(project=project_a, period="daily", amount_usd="10", webhook_url=f"http://{HOST}/x")
    client.force_login(alice)
    page = client.post(
        f"/p/{project_a.slug}/reports/budgets/save",
        {"period": "daily", "amount_usd": "10", "webhook_url": f"http://{HOST}/x"},
    )
    assert page.status_code == 400
    assert "the webhook must be an https:// URL (http:// is allowed in local development only)" in page.content.decode()
    assert not Budget.objects.exists()


def test_plain_http_is_refused_outside_local_development_when_sent(project_a, hook, network, settings) -> None:
    network.answers = [["127.0.0.1"]]
    alert = alert_for(project_a, hook.url())  # saved in local development
    settings.OCTOTRACE_WEBHOOK_HTTPS_ONLY = True
    with pytest.raises(webhooks.WebhookRefused, match="https://"):
        budgets.alert_deliver(alert_id=alert.pk, now=NOW)
    assert hook.connections == [] and network.questions == []


# --- Signatures ------------------------------------------------------------------------------


def test_each_post_is_signed_and_verifies_with_the_documented_recipe(project_a, hook, network) -> None:
    network.answers = [["127.0.0.1"]]
    alert = alert_for(project_a, hook.url())
    secret = Budget.objects.get().webhook_secret
    assert secret.startswith("whsec_") and len(secret) > 40
    budgets.alert_deliver(alert_id=alert.pk, now=NOW)
    ((headers, body),) = hook.requests
    timestamp, signature = headers["X-Octotrace-Timestamp"], headers["X-Octotrace-Signature"]
    assert timestamp == str(int(NOW.timestamp())) and signature.startswith("sha256=")

    verify = documented_verify(now=NOW + timedelta(seconds=30))
    assert verify(secret, timestamp, signature, body) is True
    assert verify("whsec_wrong", timestamp, signature, body) is False
    assert verify(secret, timestamp, signature, body.replace(b"90", b"50")) is False
    assert verify(secret, str(int(NOW.timestamp()) + 1), signature, body) is False  # the time is signed too
    # A replay ten minutes later is refused.
    assert documented_verify(now=NOW + timedelta(minutes=10))(secret, timestamp, signature, body) is False


def test_a_webhook_without_a_secret_is_not_sent_unsigned(project_a, hook, network) -> None:
    network.answers = [["127.0.0.1"]]
    alert = alert_for(project_a, hook.url())
    Budget.objects.update(webhook_secret="")  # set through the admin, say
    with pytest.raises(webhooks.WebhookRefused, match="no signing secret"):
        budgets.alert_deliver(alert_id=alert.pk, now=NOW)
    assert hook.connections == []


# --- The secret, shown once --------------------------------------------------------------------


def shown_secret(page) -> str:
    return re.search(r"<pre data-secret>(whsec_[\w-]+)</pre>", page.content.decode()).group(1)


def test_the_secret_is_shown_once_when_the_webhook_is_set(project_a, client, alice) -> None:
    client.force_login(alice)
    save = f"/p/{project_a.slug}/reports/budgets/save"
    form = {"period": "daily", "amount_usd": "10", "webhook_url": f"https://{HOST}/a"}
    page = client.post(save, form)
    assert page.status_code == 200 and "no-store" in page["Cache-Control"]
    secret = shown_secret(page)
    assert Budget.objects.get().webhook_secret == secret
    assert secret not in client.get(f"/p/{project_a.slug}/reports/budgets/").content.decode()
    # Saved again with the same URL: the secret stays and is not shown.
    again = client.post(save, {**form, "amount_usd": "12"})
    assert again.status_code == 302 and Budget.objects.get().webhook_secret == secret
    assert secret not in client.get(again.url).content.decode()
    # A new URL is a new receiver: a new secret, shown once.
    moved = client.post(save, {**form, "webhook_url": f"https://{HOST}/b"})
    assert shown_secret(moved) == Budget.objects.get().webhook_secret != secret
    # No webhook, no secret.
    assert client.post(save, {**form, "webhook_url": ""}).status_code == 302
    assert Budget.objects.get().webhook_secret == ""


def test_rotating_the_secret_shows_a_new_one_once_and_signs_with_it(project_a, hook, network, client, alice) -> None:
    network.answers = [["127.0.0.1"]]
    alert = alert_for(project_a, hook.url())
    old = Budget.objects.get().webhook_secret
    client.force_login(alice)
    page = client.post(f"/p/{project_a.slug}/reports/budgets/webhook-rotate", {"period": "daily"})
    assert page.status_code == 200 and "no-store" in page["Cache-Control"]
    new = shown_secret(page)
    assert new != old and Budget.objects.get().webhook_secret == new
    assert new not in client.get(f"/p/{project_a.slug}/reports/budgets/").content.decode()
    rotated = AuditEvent.objects.filter(project=project_a, action=AuditEvent.Action.BUDGET_SET).latest("pk")
    assert (rotated.actor, rotated.details) == (alice, {"webhook_secret_issued": True})

    budgets.alert_deliver(alert_id=alert.pk, now=NOW)
    ((headers, body),) = hook.requests
    verify = documented_verify(now=NOW)
    args = (headers["X-Octotrace-Timestamp"], headers["X-Octotrace-Signature"], body)
    assert verify(new, *args) is True and verify(old, *args) is False


def test_only_an_owner_rotates_a_secret(project_a, client, bob, alice) -> None:
    budgets.budget_set(project=project_a, period="daily", amount_usd="10", webhook_url=f"https://{HOST}/a")
    secret = Budget.objects.get().webhook_secret
    client.force_login(bob)  # a member
    assert client.post(f"/p/{project_a.slug}/reports/budgets/webhook-rotate", {"period": "daily"}).status_code == 403
    assert Budget.objects.get().webhook_secret == secret
    client.force_login(alice)
    no_webhook = client.post(f"/p/{project_a.slug}/reports/budgets/webhook-rotate", {"period": "monthly"})
    assert no_webhook.status_code == 400 and "no monthly budget with a webhook" in no_webhook.content.decode()


# --- Retries -----------------------------------------------------------------------------------


def test_network_errors_and_busy_answers_are_retried_by_the_delivery_task(project_a, hook, network) -> None:
    network.answers = [["127.0.0.1"]]
    network.refuse_next = 1  # the first connection is refused
    hook.statuses = [503]  # the second is answered "try later"
    alert = alert_for(project_a, hook.url())
    # Celery's eager mode runs the task's automatic retries one after the other.
    result = tasks.alert_deliver.apply(args=[alert.pk])
    assert result.successful() and result.result is True
    alert.refresh_from_db()
    assert (alert.attempts, alert.error) == (3, "") and alert.delivered_at is not None
    assert len(hook.requests) == 2 and len(network.questions) == 3  # resolved once per attempt
    # With a growing wait between them (30 s, 60 s, ... with jitter), and for these errors only.
    task = tasks.alert_deliver
    assert (task.retry_backoff, task.retry_backoff_max, task.retry_jitter) == (30, 240, True)
    assert task.autoretry_for == (OSError,)
    assert issubclass(webhooks.WebhookUnavailable, OSError) and issubclass(ssl.SSLError, OSError)
    assert not issubclass(webhooks.WebhookRefused, OSError) and not issubclass(webhooks.WebhookRejected, OSError)
