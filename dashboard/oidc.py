"""Single sign-on through OpenID Connect: mozilla-django-oidc's code flow, with the provider's
endpoints from its discovery document, the checks the library leaves out (audience, issuer, the
userinfo subject), and our rules for accounts (docs/deploy.md "Single sign-on"):

- a first login creates a user named after OCTOTRACE_OIDC_USERNAME_CLAIM (else the email), with
  no usable password, not staff, and in no project: an owner adds them;
- later logins find that user by email (case-insensitive);
- an account that has a password is never signed in to by SSO unless OCTOTRACE_OIDC_LINK_EXISTING
  is on, so that whoever controls an email address at the provider cannot take over a local
  admin account that happens to share it.

Only loaded when a provider is configured (config/settings.py).
"""

from __future__ import annotations

import functools
import logging
from typing import Any

import requests
from django.conf import settings
from django.contrib.auth import get_user_model
from django.contrib.auth.hashers import UNUSABLE_PASSWORD_PREFIX
from django.core.exceptions import ImproperlyConfigured, SuspiciousOperation
from django.db.models import QuerySet
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.urls import reverse
from mozilla_django_oidc.auth import OIDCAuthenticationBackend
from mozilla_django_oidc.utils import import_from_settings
from mozilla_django_oidc.views import OIDCAuthenticationCallbackView, OIDCAuthenticationRequestView

from dashboard.logins import SSO_FAILED

log = logging.getLogger(__name__)

# What a provider that is down or misconfigured raises while we look up its endpoints or talk to it
# (requests' JSON errors are ValueErrors; a discovery document without an endpoint is a KeyError).
PROVIDER_ERRORS = (requests.RequestException, ValueError, KeyError, ImproperlyConfigured)

# Our setting for each endpoint -> its key in the provider's discovery document.
_DISCOVERED = {
    "OIDC_OP_AUTHORIZATION_ENDPOINT": "authorization_endpoint",
    "OIDC_OP_TOKEN_ENDPOINT": "token_endpoint",
    "OIDC_OP_USER_ENDPOINT": "userinfo_endpoint",
    "OIDC_OP_JWKS_ENDPOINT": "jwks_uri",
}


@functools.cache
def provider_metadata(issuer: str) -> dict[str, Any]:
    """The provider's discovery document, fetched once per process (a failure is not cached: the
    next login tries again)."""
    url = f"{issuer}/.well-known/openid-configuration"
    response = requests.get(url, timeout=settings.OIDC_TIMEOUT)
    response.raise_for_status()
    metadata = response.json()
    # OpenID Connect Discovery 1.0, 4.3: the document must name the issuer it was fetched for.
    if metadata.get("issuer", "").rstrip("/") != issuer:
        raise ImproperlyConfigured(f"{url} names the issuer {metadata.get('issuer')!r}, not {issuer!r}")
    return metadata


def oidc_setting(attr: str, *default: Any) -> Any:
    """mozilla-django-oidc's settings lookup, with the endpoints not set explicitly taken from
    the discovery document of OCTOTRACE_OIDC_ISSUER."""
    if attr in _DISCOVERED:
        explicit = getattr(settings, attr, "")
        if explicit:
            return explicit
        return provider_metadata(settings.OCTOTRACE_OIDC_ISSUER)[_DISCOVERED[attr]]
    return import_from_settings(attr, *default)


class OidcBackend(OIDCAuthenticationBackend):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        # Django builds the backend again for every request of a signed-in user (get_user), which
        # must not wait for the provider: its endpoints are looked up in authenticate() only.
        self.UserModel = get_user_model()

    get_settings = staticmethod(oidc_setting)

    def authenticate(self, request: HttpRequest | None, **kwargs: Any) -> Any:
        if request is None or not request.GET.get("code") or not request.GET.get("state"):
            return None  # a password login: not ours
        super().__init__()  # the library's settings and the provider's endpoints
        return super().authenticate(request, **kwargs)

    def verify_token(self, token: str, **kwargs: Any) -> dict[str, Any]:
        """The library checks the signature, expiry and nonce; the ID token must also be issued
        by our provider, to us (OpenID Connect Core 3.1.3.7)."""
        payload = super().verify_token(token, **kwargs)
        audience = payload.get("aud")
        audiences = [audience] if isinstance(audience, str) else list(audience or [])
        if self.OIDC_RP_CLIENT_ID not in audiences:
            raise SuspiciousOperation("OIDC: the ID token is not for this client")
        issuer = settings.OCTOTRACE_OIDC_ISSUER
        if issuer and str(payload.get("iss", "")).rstrip("/") != issuer:
            raise SuspiciousOperation("OIDC: the ID token is from another issuer")
        return payload

    def get_userinfo(self, access_token: str, id_token: str, payload: dict[str, Any]) -> dict[str, Any]:
        claims = super().get_userinfo(access_token, id_token, payload)
        # OpenID Connect Core 5.3.2: userinfo about another subject than the ID token is not used.
        if claims.get("sub") != payload.get("sub"):
            raise SuspiciousOperation("OIDC: userinfo is about another subject than the ID token")
        return claims

    def verify_claims(self, claims: dict[str, Any]) -> bool:
        # An email the provider says it has not verified does not identify anyone.
        return bool(claims.get("email")) and claims.get("email_verified") is not False

    def filter_users_by_claims(self, claims: dict[str, Any]) -> QuerySet:
        users = self.UserModel.objects.filter(email__iexact=claims["email"])
        if settings.OCTOTRACE_OIDC_LINK_EXISTING:
            return users
        with_password = users.exclude(password__startswith=UNUSABLE_PASSWORD_PREFIX)
        if with_password.exists():
            raise SuspiciousOperation(
                f"OIDC: an account with a password has the email {claims['email']!r}; "
                "set OCTOTRACE_OIDC_LINK_EXISTING or make its password unusable to let SSO sign in to it"
            )
        return users

    def get_username(self, claims: dict[str, Any]) -> str:
        """The username claim, else the email; refused when both name other accounts."""
        max_length = self.UserModel._meta.get_field(self.UserModel.USERNAME_FIELD).max_length
        for candidate in (claims.get(settings.OCTOTRACE_OIDC_USERNAME_CLAIM), claims.get("email")):
            if not isinstance(candidate, str) or not candidate or len(candidate) > max_length:
                continue
            if not self.UserModel.objects.filter(**{self.UserModel.USERNAME_FIELD: candidate}).exists():
                return candidate
        raise SuspiciousOperation(f"OIDC: no free username for {claims['email']!r}")

    def create_user(self, claims: dict[str, Any]) -> Any:
        # No password (unusable), not staff, no project: an owner adds the user to projects.
        return self.UserModel.objects.create_user(
            self.get_username(claims),
            email=claims["email"],
            first_name=str(claims.get("given_name", ""))[:150],
            last_name=str(claims.get("family_name", ""))[:150],
        )


class AuthenticateView(OIDCAuthenticationRequestView):
    """GET /oidc/authenticate/: sends the browser to the provider."""

    get_settings = staticmethod(oidc_setting)

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        # The authorization endpoint is looked up in get(), where a provider that is down can be
        # answered with the login page instead of an error.
        super(OIDCAuthenticationRequestView, self).__init__(*args, **kwargs)
        self.OIDC_RP_CLIENT_ID = settings.OIDC_RP_CLIENT_ID

    def get(self, request: HttpRequest) -> HttpResponse:
        try:
            self.OIDC_OP_AUTH_ENDPOINT = oidc_setting("OIDC_OP_AUTHORIZATION_ENDPOINT")
        except PROVIDER_ERRORS as exc:
            log.warning("OIDC: the provider's discovery document could not be read: %r", exc)
            return HttpResponseRedirect(f"{reverse('dashboard:login')}?{SSO_FAILED}")
        return super().get(request)


class CallbackView(OIDCAuthenticationCallbackView):
    """GET /oidc/callback/: the provider sends the browser back here with a code."""

    @property
    def failure_url(self) -> str:
        return f"{reverse('dashboard:login')}?{SSO_FAILED}"

    def get(self, request: HttpRequest) -> HttpResponse:
        try:
            return super().get(request)
        except SuspiciousOperation as exc:
            # A state this browser did not start, a nonce, signature, audience or issuer that does not
            # match: nobody is logged in, and the login page says so.
            log.warning("OIDC: login refused: %s", exc)
        except PROVIDER_ERRORS as exc:
            log.warning("OIDC: the provider could not complete the login: %r", exc)
        return self.login_failure()
