"""A real farm (Server, Manager, two Workers) with a Dashboard, and Debian's Chromium.

Chromium missing is a failure, never a skip: `scripts/test` installs it (apt) where it can.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
from dashkit import CHROMIUM_ARGS, DashboardFarm, start_dashboard
from playwright.sync_api import Browser, Page, sync_playwright

from farmkit import TestFarm


@pytest.fixture(scope="session")
def chromium_path() -> str:
    path = (
        os.environ.get("FLAMENCO_TEST_CHROMIUM") or shutil.which("chromium") or "/usr/bin/chromium"
    )
    if not Path(path).is_file():
        pytest.fail(
            f"The Dashboard tests need Debian's Chromium at {path}: `apt-get install chromium` "
            "(scripts/test does it when run as root)."
        )
    return path


# Module scope: Playwright's sync API keeps an event loop running in this thread while it
# is open, and later modules call asyncio.run().
@pytest.fixture(scope="module")
def browser(chromium_path: str) -> Iterator[Browser]:
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=chromium_path, args=CHROMIUM_ARGS)
        yield browser
        browser.close()


@pytest.fixture(scope="module")
def dash(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DashboardFarm]:
    """Server, Manager `local`, Workers w1 and w2, and a Dashboard, shared by a module."""
    with TestFarm(tmp_path_factory.mktemp("dash") / "farm") as farm:
        farm.start_server()
        farm.start_manager()
        farm.start_worker("w1")
        farm.start_worker("w2")
        url, proc = start_dashboard(farm)
        yield DashboardFarm(farm, url, proc)


@pytest.fixture
def page(browser: Browser, dash: DashboardFarm) -> Iterator[Page]:
    """A fresh browser context (no cookies) with one page; dialogs are accepted."""
    context = browser.new_context(base_url=dash.url, viewport={"width": 1440, "height": 900})
    context.set_default_timeout(20_000)
    page = context.new_page()
    page.on("dialog", lambda dialog: dialog.accept())
    yield page
    context.close()
