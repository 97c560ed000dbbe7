"""Helpers for browser tests: logging in and screenshots (test-artifacts/)."""

from __future__ import annotations

from pathlib import Path

from playwright.sync_api import Page

from tests.factories import ROOT

ARTIFACTS = ROOT / "test-artifacts"


def logged_in(page: Page, live_server, username: str, password: str) -> Page:
    page.goto(f"{live_server.url}/login/")
    page.fill("input[name=username]", username)
    page.fill("input[name=password]", password)
    page.click("button[type=submit]")
    page.wait_for_load_state()
    return page


def screenshot(page: Page, name: str) -> Path:
    ARTIFACTS.mkdir(exist_ok=True)
    path = ARTIFACTS / f"{name}.png"
    page.screenshot(path=str(path), full_page=True)
    return path
