"""Logins: throttling and lockout (django-axes, per username and client address), staff unlock,
password validators, and the session cookie (docs/deploy.md "Logins and sessions").

alice and bob have accounts; every failed login below is alice's unless said otherwise."""

from __future__ import annotations

from datetime import timedelta

import pytest
from axes.models import AccessAttempt
from django.conf import settings
from django.contrib.auth.models import User
from django.contrib.auth.password_validation import validate_password
from django.core.exceptions import ImproperlyConfigured, ValidationError
from django.core.management import call_command
from django.db.models import F
from django.test import Client, override_settings

from demo.seed import demo_seed
from tests.factories import settings_from_env

HOME = "/"
HERE = "127.0.0.1"
ELSEWHERE = "10.0.0.9"


def login(client: Client, username: str, password: str, *, ip: str = HERE, **extra: str):
    return client.post("/login/", {"username": username, "password": password}, REMOTE_ADDR=ip, **extra)


def fail(client: Client, username: str = "alice", *, times: int, ip: str = HERE, **extra: str) -> list[int]:
    return [login(client, username, "not-the-password", ip=ip, **extra).status_code for _ in range(times)]


def logged_in_as(client: Client) -> str | None:
    user_id = client.session.get("_auth_user_id")
    return User.objects.get(pk=user_id).username if user_id else None


def cool_off_passes(*, by: timedelta = timedelta(seconds=1)) -> None:
    """Time goes by: every recorded failure moves the cool-off plus `by` into the past."""
    AccessAttempt.objects.update(attempt_time=F("attempt_time") - settings.AXES_COOLOFF_TIME - by)


# --- Throttling ------------------------------------------------------------------------------


def test_a_failed_login_says_so_and_counts(client, alice) -> None:
    response = login(client, "alice", "not-the-password")
    assert response.status_code == 200
    assert "didn't match" in response.content.decode()
    assert AccessAttempt.objects.get(username="alice").failures_since_start == 1


def test_the_fifth_failure_locks_out_even_the_right_password(client, alice) -> None:
    assert fail(client, times=5) == [200, 200, 200, 200, 429]
    response = login(client, "alice", "alice-password")
    assert response.status_code == 429
    assert response["Retry-After"] == str(15 * 60)
    page = response.content.decode()
    assert "Too many failed logins" in page and "for 15 minutes" in page and "axes_reset_username" in page
    assert logged_in_as(client) is None


def test_other_users_and_other_addresses_are_not_locked_out(client, alice, bob) -> None:
    fail(client, times=5)
    assert login(client, "bob", "bob-password").status_code == 302
    assert logged_in_as(client) == "bob"
    other = Client()
    assert login(other, "alice", "alice-password", ip=ELSEWHERE).status_code == 302
    assert logged_in_as(other) == "alice"


def test_the_lockout_ends_with_the_cool_off(client, alice) -> None:
    fail(client, times=5)
    cool_off_passes(by=-timedelta(minutes=1))  # a minute short of it
    assert login(client, "alice", "alice-password").status_code == 429
    cool_off_passes()
    assert login(client, "alice", "alice-password").status_code == 302
    assert logged_in_as(client) == "alice"


def test_a_success_forgets_earlier_failures(client, alice) -> None:
    fail(client, times=4)
    assert login(client, "alice", "alice-password").status_code == 302
    client.logout()
    assert fail(client, times=4) == [200] * 4  # counting from zero again


def test_the_limit_and_cool_off_come_from_the_environment(client, alice, monkeypatch) -> None:
    env = settings_from_env(monkeypatch, OCTOTRACE_LOGIN_FAILURE_LIMIT="3", OCTOTRACE_LOGIN_COOLOFF_MINUTES="60")
    assert env["AXES_FAILURE_LIMIT"] == 3 and env["AXES_COOLOFF_TIME"] == timedelta(hours=1)
    with override_settings(AXES_FAILURE_LIMIT=env["AXES_FAILURE_LIMIT"], AXES_COOLOFF_TIME=env["AXES_COOLOFF_TIME"]):
        assert fail(client, times=3) == [200, 200, 429]
        response = login(client, "alice", "alice-password")
        assert response.status_code == 429 and response["Retry-After"] == "3600"


@pytest.mark.parametrize(
    "env",
    [
        {"OCTOTRACE_LOGIN_FAILURE_LIMIT": "0"},
        {"OCTOTRACE_LOGIN_FAILURE_LIMIT": "five"},
        {"OCTOTRACE_LOGIN_COOLOFF_MINUTES": "0"},
        {"OCTOTRACE_PROXY_COUNT": "-1"},
    ],
)
def test_bad_throttling_settings_stop_startup(monkeypatch, env) -> None:
    with pytest.raises(ImproperlyConfigured):
        settings_from_env(monkeypatch, **env)


@override_settings(OCTOTRACE_PROXY_COUNT=1)
def test_behind_a_proxy_the_address_it_appended_counts(client, alice) -> None:
    proxy = "192.168.1.1"
    # What the client put in X-Forwarded-For itself (left of the proxy's entry) changes nothing.
    spoofed = [f"203.0.113.{n}, {ELSEWHERE}" for n in range(5)]
    assert [fail(client, times=1, ip=proxy, HTTP_X_FORWARDED_FOR=header)[0] for header in spoofed] == [200] * 4 + [429]
    assert AccessAttempt.objects.get().ip_address == ELSEWHERE
    assert login(client, "alice", "alice-password", ip=proxy, HTTP_X_FORWARDED_FOR=ELSEWHERE).status_code == 429
    # Another client behind the same proxy is not locked out.
    assert login(client, "alice", "alice-password", ip=proxy, HTTP_X_FORWARDED_FOR=HERE).status_code == 302


def test_force_login_is_not_throttled(client, alice) -> None:
    fail(client, times=5)
    client.force_login(alice)  # what most tests use: no authenticate(), no request
    assert client.get(HOME).status_code == 200


# --- Staff unlock ------------------------------------------------------------------------------


def test_axes_reset_username_unlocks(client, alice) -> None:
    fail(client, times=5)
    call_command("axes_reset_username", "alice")
    assert login(client, "alice", "alice-password").status_code == 302


def test_axes_reset_unlocks_everyone(client, alice, bob) -> None:
    fail(client, times=5)
    fail(client, "bob", times=5)
    call_command("axes_reset")
    assert login(client, "alice", "alice-password").status_code == 302
    assert login(Client(), "bob", "bob-password").status_code == 302


def test_staff_unlock_in_the_admin(client, admin_client, alice) -> None:
    fail(client, times=5)
    changelist = admin_client.get("/admin/axes/accessattempt/")
    assert changelist.status_code == 200 and "alice" in changelist.content.decode()
    attempt = AccessAttempt.objects.get(username="alice")
    response = admin_client.post(
        "/admin/axes/accessattempt/",
        {"action": "delete_selected", "_selected_action": [attempt.pk], "post": "yes"},
    )
    assert response.status_code == 302
    assert login(client, "alice", "alice-password").status_code == 302


# --- Password validators ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("password", "reason"),
    [
        ("demo", "too short"),
        ("password123", "too common"),
        ("4815162342", "entirely numeric"),
        ("dana-smith", "too similar to the username"),
    ],
)
def test_the_validators_reject_weak_passwords(password, reason) -> None:
    with pytest.raises(ValidationError) as exc:
        validate_password(password, User(username="dana-smith"))
    assert any(reason in message for message in exc.value.messages)


def test_the_validators_accept_a_good_password() -> None:
    validate_password("plum tractor 1987 lighthouse", User(username="dana-smith"))


def test_the_admin_refuses_a_weak_password_for_a_new_user(admin_client) -> None:
    response = admin_client.post(
        "/admin/auth/user/add/",
        {"username": "dana", "usable_password": "true", "password1": "password", "password2": "password"},
    )
    assert response.status_code == 200 and "too common" in response.content.decode()
    assert not User.objects.filter(username="dana").exists()


def test_the_minimum_length_comes_from_the_environment(monkeypatch) -> None:
    env = settings_from_env(monkeypatch, OCTOTRACE_PASSWORD_MIN_LENGTH="14")
    minimum = next(v for v in env["AUTH_PASSWORD_VALIDATORS"] if v["NAME"].endswith("MinimumLengthValidator"))
    assert minimum["OPTIONS"] == {"min_length": 14}
    with pytest.raises(ImproperlyConfigured):
        settings_from_env(monkeypatch, OCTOTRACE_PASSWORD_MIN_LENGTH="6")


def test_the_demo_keeps_demo_demo_in_local_development(db) -> None:
    assert settings.LOCAL_DEV
    seed = demo_seed(username="demo", password="demo", traces=0)
    assert seed.user_created and User.objects.get(username="demo").check_password("demo")


@override_settings(LOCAL_DEV=False)
def test_the_demo_user_needs_a_valid_password_elsewhere(db) -> None:
    with pytest.raises(ValidationError):
        demo_seed(username="demo", password="demo", traces=0)
    assert not User.objects.filter(username="demo").exists()
    demo_seed(username="demo", password="plum tractor 1987 lighthouse", traces=0)
    assert User.objects.get(username="demo").check_password("plum tractor 1987 lighthouse")


# --- Sessions and cookies --------------------------------------------------------------------


def test_the_session_cookie_is_http_only_and_same_site(client, alice) -> None:
    response = login(client, "alice", "alice-password")
    cookie = response.cookies[settings.SESSION_COOKIE_NAME]
    assert cookie["httponly"] is True
    assert cookie["samesite"] == "Lax"
    assert cookie["max-age"] == 14 * 24 * 3600


def test_session_settings_come_from_the_environment(monkeypatch) -> None:
    env = settings_from_env(
        monkeypatch,
        SESSION_COOKIE_AGE="3600",
        SESSION_EXPIRE_AT_BROWSER_CLOSE="true",
        SESSION_COOKIE_SAMESITE="Strict",
    )
    assert env["SESSION_COOKIE_AGE"] == 3600
    assert env["SESSION_EXPIRE_AT_BROWSER_CLOSE"] is True
    assert env["SESSION_COOKIE_SAMESITE"] == env["CSRF_COOKIE_SAMESITE"] == "Strict"


def test_cookies_are_secure_outside_local_development(monkeypatch) -> None:
    env = settings_from_env(monkeypatch, OCTOTRACE_LOCAL_DEV="0", SECRET_KEY="k" * 50)
    assert env["SESSION_COOKIE_SECURE"] is True and env["CSRF_COOKIE_SECURE"] is True
    assert env["SESSION_COOKIE_HTTPONLY"] is True


@pytest.mark.parametrize("env", [{"SESSION_COOKIE_SAMESITE": "None"}, {"SESSION_COOKIE_AGE": "10"}])
def test_bad_session_settings_stop_startup(monkeypatch, env) -> None:
    with pytest.raises(ImproperlyConfigured):
        settings_from_env(monkeypatch, **env)
