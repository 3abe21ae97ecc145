"""Fixtures every test gets, and the real browser for the browser tests."""

import os
import shutil

import pytest


@pytest.fixture(autouse=True)
def forget_per_process_memory():
    """Workers keep some state per process (noise memory, compiled playbooks, loaded models), keyed by
    database ids. Test databases hand the same ids out again, so each test starts with none of it."""
    from hubbub.connectors import noise
    from hubbub.listening import actions as listening
    from hubbub.playbook import actions as playbook_actions
    from hubbub.understanding import actions as understanding

    caches = [
        noise._memories,
        playbook_actions._compiled,
        understanding._loaded,
        listening._local.__dict__.setdefault("matchers", {}),
    ]
    for cache in caches:
        cache.clear()
    yield
    for cache in caches:
        cache.clear()


@pytest.fixture(autouse=True)
def ngram_models_unless_asked(monkeypatch):
    """Tests train n-gram models (seconds) unless they ask for the encoder (encoder_models): encoding
    is 20-40 posts/s, and most tests are about the process around a model, not its features."""
    from django.conf import settings

    monkeypatch.setattr(settings, "HUBBUB_TEXT_ENCODER", False)


@pytest.fixture
def encoder_models(monkeypatch):
    from django.conf import settings

    monkeypatch.setattr(settings, "HUBBUB_TEXT_ENCODER", True)


CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"


@pytest.fixture
def browser_page(monkeypatch):
    """A page in Debian's Chromium driven by Playwright (no browser download; scripts/ensure-chromium)."""
    if not os.path.exists(CHROMIUM):
        pytest.fail("Chromium is not installed: run scripts/ensure-chromium (make test does)")
    # Playwright's sync API runs an event loop in this thread; the ORM calls a test makes between
    # browser steps are ordinary synchronous ones.
    monkeypatch.setenv("DJANGO_ALLOW_ASYNC_UNSAFE", "true")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=CHROMIUM,
            headless=True,
            # Without the background-networking flags Chromium keeps calling out to a closed network.
            args=[
                "--no-sandbox",
                "--disable-gpu",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                "--no-first-run",
            ],
        )
        page = browser.new_page()
        page.set_default_timeout(15_000)
        yield page
        browser.close()
