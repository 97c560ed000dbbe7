"""`manage.py check --deploy` with the production environment that docs/deploy.md gives: clean at
--fail-level WARNING. Each run is a fresh process with none of the test run's local-development
variables, as a production server starts."""

from __future__ import annotations

import os
import re
import secrets
import subprocess
import sys
from pathlib import Path

from tests.factories import ROOT

# Variables of the test run that a production server does not have.
DEVELOPMENT_ONLY = re.compile(r"^(OCTOTRACE_.*|DEBUG|SECRET_KEY|ALLOWED_HOSTS|CSRF_TRUSTED_ORIGINS|DJANGO_.*)$")
HSTS_OPT_INS = {"OCTOTRACE_HSTS_INCLUDE_SUBDOMAINS", "OCTOTRACE_HSTS_PRELOAD"}


def documented_environment() -> dict[str, str]:
    """The `NAME=value` lines of the first sh block under "The production environment, checked"."""
    text = (ROOT / "docs" / "deploy.md").read_text()
    section = text.split("### The production environment, checked", 1)[1]
    block = section.split("```sh\n", 1)[1].split("```", 1)[0]
    environment = dict(re.findall(r"^([A-Z][A-Z0-9_]*)=(\S*)", block, flags=re.MULTILINE))
    assert environment.pop("SECRET_KEY") == "...", "the docs' SECRET_KEY line is a placeholder"
    return environment


def check_deploy(tmp_path: Path, environment: dict[str, str]) -> subprocess.CompletedProcess[str]:
    environ = {name: value for name, value in os.environ.items() if not DEVELOPMENT_ONLY.match(name)}
    environ.update(
        environment,
        SECRET_KEY=secrets.token_urlsafe(50),
        OCTOTRACE_VAR_DIR=str(tmp_path / "var"),
        STATIC_ROOT=str(tmp_path / "static"),
    )
    return subprocess.run(
        [sys.executable, "manage.py", "check", "--deploy", "--fail-level", "WARNING"],
        cwd=ROOT,
        env=environ,
        capture_output=True,
        text=True,
        timeout=120,
    )


def findings(result: subprocess.CompletedProcess[str]) -> set[str]:
    return set(re.findall(r"\((\w+\.[EW]\d+)\)", result.stdout + result.stderr))


def test_the_docs_production_environment_turns_on_tls_and_no_development_mode() -> None:
    environment = documented_environment()
    assert environment["OCTOTRACE_BEHIND_TLS_PROXY"] == "1"
    assert environment["ALLOWED_HOSTS"] and environment["DATABASE_URL"].startswith("postgres://")
    assert not {"OCTOTRACE_LOCAL_DEV", "OCTOTRACE_DEMO", "DEBUG"} & set(environment)


def test_check_deploy_is_clean_with_the_docs_production_environment(tmp_path: Path) -> None:
    result = check_deploy(tmp_path, documented_environment())
    assert result.returncode == 0, result.stdout + result.stderr
    assert "System check identified no issues" in result.stdout
    assert not findings(result)


def test_without_the_hsts_opt_ins_the_check_only_reminds_of_them(tmp_path: Path) -> None:
    environment = {k: v for k, v in documented_environment().items() if k not in HSTS_OPT_INS}
    result = check_deploy(tmp_path, environment)
    assert result.returncode != 0
    assert findings(result) == {"security.W005", "security.W021"}


def test_without_the_tls_proxy_the_check_asks_for_hsts_and_the_https_redirect(tmp_path: Path) -> None:
    """The TLS settings come from OCTOTRACE_BEHIND_TLS_PROXY: without it there is no redirect or HSTS."""
    environment = {k: v for k, v in documented_environment().items() if k != "OCTOTRACE_BEHIND_TLS_PROXY"}
    result = check_deploy(tmp_path, environment)
    assert {"security.W004", "security.W008"} <= findings(result)
