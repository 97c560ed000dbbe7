"""Single sign-on through OpenID Connect (dashboard/oidc.py), against a stand-in provider: a small
HTTP server on 127.0.0.1 that speaks the provider's side of the authorization code flow (discovery,
authorize, token with PKCE, JWKS, userinfo) and signs ID tokens RS256 with a key made here.

dana@example.com has an account at the provider only; alice has a password account here."""

from __future__ import annotations

import base64
import hashlib
import importlib
import json
import secrets
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

import jwt
import pytest
import requests
from cryptography.hazmat.primitives.asymmetric import rsa
from django.conf import settings
from django.contrib.auth.models import User
from django.core.exceptions import ImproperlyConfigured
from django.test import Client, override_settings
from django.urls import clear_url_caches

import config.urls
from tests.factories import project_with_members, settings_from_env
from tracer.models import Membership

CLIENT_ID = "octotrace"
CLIENT_SECRET = "stand-in-secret"
DANA = {
    "sub": "provider-user-7",
    "email": "dana@example.com",
    "email_verified": True,
    "preferred_username": "dana",
    "given_name": "Dana",
    "family_name": "Scully",
}
FAILED = "/login/?sso=failed"


class StandInProvider:
    """The provider's side of the code flow. Attributes a test may change to misbehave: `claims`
    (what userinfo and the ID token say), `signing_key`, `nonce`, `audience`, `userinfo_sub`."""

    def __init__(self) -> None:
        self.key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        self.signing_key = self.key
        self.kid = "stand-in-1"
        self.claims: dict[str, Any] = dict(DANA)
        self.nonce: str | None = None  # None: the nonce the login sent
        self.audience = CLIENT_ID
        self.userinfo_sub: str | None = None  # None: the ID token's subject
        self.grants: dict[str, dict[str, str]] = {}  # code -> what /authorize was asked
        self.tokens: dict[str, dict[str, Any]] = {}  # access token -> claims
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(self))
        self.issuer = f"http://127.0.0.1:{self.server.server_address[1]}"

    def metadata(self) -> dict[str, str]:
        return {
            "issuer": self.issuer,
            "authorization_endpoint": f"{self.issuer}/authorize",
            "token_endpoint": f"{self.issuer}/token",
            "userinfo_endpoint": f"{self.issuer}/userinfo",
            "jwks_uri": f"{self.issuer}/jwks",
        }

    def authorize(self, query: dict[str, str]) -> str:
        """The user signed in at the provider: back to the client with a code."""
        assert query["client_id"] == CLIENT_ID and query["response_type"] == "code"
        assert query["code_challenge_method"] == "S256"
        code = secrets.token_urlsafe(16)
        self.grants[code] = query
        return f"{query['redirect_uri']}?{urlencode({'code': code, 'state': query['state']})}"

    def token(self, form: dict[str, str]) -> tuple[int, dict[str, Any]]:
        grant = self.grants.pop(form.get("code", ""), None)
        if grant is None or form.get("grant_type") != "authorization_code":
            return 400, {"error": "invalid_grant"}
        if (form.get("client_id"), form.get("client_secret")) != (CLIENT_ID, CLIENT_SECRET):
            return 401, {"error": "invalid_client"}
        if form.get("redirect_uri") != grant["redirect_uri"]:
            return 400, {"error": "invalid_grant"}
        challenge = base64.urlsafe_b64encode(hashlib.sha256(form.get("code_verifier", "").encode()).digest())
        if challenge.rstrip(b"=").decode() != grant["code_challenge"]:
            return 400, {"error": "invalid_grant", "error_description": "PKCE verification failed"}
        access_token = secrets.token_urlsafe(16)
        self.tokens[access_token] = dict(self.claims)
        issued = int(time.time())
        id_claims = {
            "iss": self.issuer,
            "aud": self.audience,
            "sub": self.claims["sub"],
            "email": self.claims.get("email"),
            "nonce": self.nonce if self.nonce is not None else grant["nonce"],
            "iat": issued,
            "exp": issued + 300,
        }
        id_token = jwt.encode(id_claims, self.signing_key, algorithm="RS256", headers={"kid": self.kid})
        return 200, {"access_token": access_token, "token_type": "Bearer", "expires_in": 300, "id_token": id_token}

    def jwks(self) -> dict[str, Any]:
        jwk = jwt.algorithms.RSAAlgorithm.to_jwk(self.key.public_key(), as_dict=True)
        return {"keys": [{**jwk, "kid": self.kid, "alg": "RS256", "use": "sig"}]}

    def userinfo(self, authorization: str) -> tuple[int, dict[str, Any]]:
        claims = self.tokens.get(authorization.removeprefix("Bearer "))
        if claims is None:
            return 401, {"error": "invalid_token"}
        return 200, {**claims, "sub": self.userinfo_sub or claims["sub"]}


def _handler(provider: StandInProvider) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            url = urlsplit(self.path)
            query = {name: values[0] for name, values in parse_qs(url.query).items()}
            if url.path == "/.well-known/openid-configuration":
                self.reply(200, provider.metadata())
            elif url.path == "/authorize":
                self.send_response(302)
                self.send_header("Location", provider.authorize(query))
                self.end_headers()
            elif url.path == "/jwks":
                self.reply(200, provider.jwks())
            elif url.path == "/userinfo":
                self.reply(*provider.userinfo(self.headers.get("Authorization", "")))
            else:
                self.reply(404, {"error": "not_found"})

        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length", 0))).decode()
            form = {name: values[0] for name, values in parse_qs(body).items()}
            if urlsplit(self.path).path == "/token":
                self.reply(*provider.token(form))
            else:
                self.reply(404, {"error": "not_found"})

        def reply(self, status: int, payload: dict[str, Any]) -> None:
            body = json.dumps(payload).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: Any) -> None:
            pass  # keep the test output to the test's own

    return Handler


@pytest.fixture
def provider() -> Iterator[StandInProvider]:
    stand_in = StandInProvider()
    thread = threading.Thread(target=stand_in.server.serve_forever, daemon=True)
    thread.start()
    yield stand_in
    stand_in.server.shutdown()
    stand_in.server.server_close()
    thread.join()


def _urls_reload() -> None:
    # config/urls.py adds the /oidc/ routes at import when a provider is configured.
    importlib.reload(config.urls)
    clear_url_caches()


def sso_settings(env: dict[str, Any]) -> dict[str, Any]:
    """The settings a server started with this environment has, for everything SSO touches."""
    return {
        name: value
        for name, value in env.items()
        if name.startswith(("OIDC_", "OCTOTRACE_OIDC")) or name == "AUTHENTICATION_BACKENDS"
    }


@pytest.fixture
def sso(provider, monkeypatch, db) -> Iterator[StandInProvider]:
    """The server as started with OCTOTRACE_OIDC_ISSUER and client credentials in its environment."""
    env = settings_from_env(
        monkeypatch,
        OCTOTRACE_OIDC_ISSUER=provider.issuer,
        OCTOTRACE_OIDC_CLIENT_ID=CLIENT_ID,
        OCTOTRACE_OIDC_CLIENT_SECRET=CLIENT_SECRET,
    )
    with override_settings(**sso_settings(env)):
        _urls_reload()
        yield provider
    _urls_reload()


def sso_login(client: Client, *, next_url: str = "", state: str | None = None):
    """A browser's trip: our authenticate URL -> the provider's authorize -> our callback."""
    start = client.get("/oidc/authenticate/", {"next": next_url} if next_url else {})
    assert start.status_code == 302, start
    authorize = requests.get(start["Location"], allow_redirects=False, timeout=10)
    assert authorize.status_code == 302
    callback = urlsplit(authorize.headers["Location"])
    assert (callback.netloc, callback.path) == ("testserver", "/oidc/callback/")
    query = {name: values[0] for name, values in parse_qs(callback.query).items()}
    if state is not None:
        query["state"] = state
    return client.get(callback.path, query)


def logged_in_as(client: Client) -> str | None:
    user_id = client.session.get("_auth_user_id")
    return User.objects.get(pk=user_id).username if user_id else None


# --- Off by default ----------------------------------------------------------------------------


def test_it_is_off_by_default(client, db) -> None:
    assert settings.OCTOTRACE_OIDC is False
    assert "dashboard.oidc.OidcBackend" not in settings.AUTHENTICATION_BACKENDS
    assert client.get("/oidc/authenticate/").status_code == 404
    assert client.get("/oidc/callback/?code=x&state=y").status_code == 404
    assert "Sign in with SSO" not in client.get("/login/").content.decode()


def test_explicit_endpoints_turn_it_on_without_discovery(monkeypatch) -> None:
    endpoints = {
        f"OCTOTRACE_OIDC_{name}_ENDPOINT": f"https://idp.example/{name.lower()}"
        for name in ("AUTHORIZATION", "TOKEN", "USERINFO", "JWKS")
    }
    env = settings_from_env(
        monkeypatch, **endpoints, OCTOTRACE_OIDC_CLIENT_ID=CLIENT_ID, OCTOTRACE_OIDC_CLIENT_SECRET=CLIENT_SECRET
    )
    assert env["OCTOTRACE_OIDC"] is True
    assert env["AUTHENTICATION_BACKENDS"][0] == "axes.backends.AxesStandaloneBackend"
    assert env["AUTHENTICATION_BACKENDS"][-1] == "dashboard.oidc.OidcBackend"
    assert env["OIDC_OP_TOKEN_ENDPOINT"] == "https://idp.example/token"
    assert env["OIDC_RP_SCOPES"] == "openid email profile" and env["OIDC_RP_SIGN_ALGO"] == "RS256"


@pytest.mark.parametrize(
    "env",
    [
        {"OCTOTRACE_OIDC_ISSUER": "https://idp.example"},  # no client
        {"OCTOTRACE_OIDC_ISSUER": "https://idp.example", "OCTOTRACE_OIDC_CLIENT_ID": CLIENT_ID},  # no secret
        {  # some endpoints but not all, and no issuer to discover the rest from
            "OCTOTRACE_OIDC_TOKEN_ENDPOINT": "https://idp.example/token",
            "OCTOTRACE_OIDC_CLIENT_ID": CLIENT_ID,
            "OCTOTRACE_OIDC_CLIENT_SECRET": CLIENT_SECRET,
        },
        {  # the provider's redirect back would arrive without the session cookie
            "OCTOTRACE_OIDC_ISSUER": "https://idp.example",
            "OCTOTRACE_OIDC_CLIENT_ID": CLIENT_ID,
            "OCTOTRACE_OIDC_CLIENT_SECRET": CLIENT_SECRET,
            "SESSION_COOKIE_SAMESITE": "Strict",
        },
    ],
)
def test_an_incomplete_configuration_stops_startup(monkeypatch, env) -> None:
    with pytest.raises(ImproperlyConfigured):
        settings_from_env(monkeypatch, **env)


# --- The flow ------------------------------------------------------------------------------------


def test_the_login_page_offers_sso(client, sso) -> None:
    page = client.get("/login/?next=/p/x/").content.decode()
    assert 'href="/oidc/authenticate/?next=/p/x/"' in page and "Sign in with SSO" in page


def test_a_first_login_creates_a_user_in_no_project(client, sso, project_a) -> None:
    response = sso_login(client)
    assert (response.status_code, response["Location"]) == (302, "/")
    assert logged_in_as(client) == "dana"
    dana = User.objects.get(username="dana")
    assert (dana.email, dana.first_name, dana.last_name) == ("dana@example.com", "Dana", "Scully")
    assert not dana.has_usable_password() and not dana.is_staff and not dana.is_superuser
    assert not Membership.objects.filter(user=dana).exists()
    assert "No projects yet" in client.get("/").content.decode()


def test_the_login_returns_to_the_page_asked_for(client, sso) -> None:
    assert sso_login(client, next_url="/p/project-a/traces/")["Location"] == "/p/project-a/traces/"


def test_a_second_login_is_the_same_user(client, sso) -> None:
    sso_login(client)
    project = project_with_members("Project C", members=(User.objects.get(username="dana"),))  # an owner adds dana
    again = Client()
    sso.claims["email"] = "Dana@Example.com"  # emails match case-insensitively
    assert sso_login(again).status_code == 302
    assert logged_in_as(again) == "dana"
    assert User.objects.count() == 1
    assert again.get(f"/p/{project.slug}/").status_code == 200


def test_the_username_falls_back_to_the_email_when_taken(client, sso, alice) -> None:
    sso.claims["preferred_username"] = "alice"
    sso_login(client)
    assert logged_in_as(client) == "dana@example.com"
    assert User.objects.get(username="alice").email == ""


def test_password_logins_still_work_with_sso_on(client, sso, alice) -> None:
    response = client.post("/login/", {"username": "alice", "password": "alice-password"})
    assert response.status_code == 302 and logged_in_as(client) == "alice"


# --- Refused ---------------------------------------------------------------------------------


def _refused(client: Client, response) -> None:
    assert (response.status_code, response["Location"]) == (302, FAILED)
    assert logged_in_as(client) is None
    assert "Single sign-on did not complete" in client.get(FAILED).content.decode()


def test_a_bad_signature_is_refused(client, sso) -> None:
    sso.signing_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)  # same kid, other key
    _refused(client, sso_login(client))
    assert not User.objects.exists()


def test_a_wrong_nonce_is_refused(client, sso) -> None:
    sso.nonce = "a-nonce-from-another-login"
    _refused(client, sso_login(client))
    assert not User.objects.exists()


def test_a_state_this_browser_did_not_start_is_refused(client, sso) -> None:
    _refused(client, sso_login(client, state="forged-state"))
    assert not User.objects.exists()


def test_a_callback_in_another_browser_is_refused(client, sso) -> None:
    start = client.get("/oidc/authenticate/")
    callback = requests.get(start["Location"], allow_redirects=False, timeout=10).headers["Location"]
    other = Client()  # no login started in this session
    _refused(other, other.get(callback.removeprefix("http://testserver")))


def test_a_token_for_another_client_is_refused(client, sso) -> None:
    sso.audience = "another-app"
    _refused(client, sso_login(client))


def test_userinfo_about_another_subject_is_refused(client, sso) -> None:
    sso.userinfo_sub = "someone-else"
    _refused(client, sso_login(client))
    assert not User.objects.exists()


def test_an_unverified_email_is_refused(client, sso) -> None:
    sso.claims["email_verified"] = False
    _refused(client, sso_login(client))


def test_a_password_account_with_the_same_email_is_not_taken_over(client, sso, alice) -> None:
    alice.email = "dana@example.com"
    alice.save(update_fields=["email"])
    _refused(client, sso_login(client))
    assert User.objects.count() == 1


def test_linking_existing_accounts_can_be_turned_on(client, sso, alice) -> None:
    alice.email = "dana@example.com"
    alice.save(update_fields=["email"])
    with override_settings(OCTOTRACE_OIDC_LINK_EXISTING=True):
        sso_login(client)
    assert logged_in_as(client) == "alice"


def test_a_provider_that_is_down_sends_back_to_the_login_page(client, sso) -> None:
    with override_settings(OCTOTRACE_OIDC_ISSUER="http://127.0.0.1:9"):  # discard port: refused
        response = client.get("/oidc/authenticate/")
    assert (response.status_code, response["Location"]) == (302, FAILED)
