"""Steps every browser test takes."""

from __future__ import annotations


def log_in(page, base_url: str, username: str, password: str) -> list[str]:
    """Log the browser page in; returns the list the page's console errors are collected into
    (a Content Security Policy violation shows up there)."""
    errors: list[str] = []
    page.on("console", lambda message: errors.append(message.text) if message.type == "error" else None)
    page.goto(f"{base_url}/login/")
    page.fill("#id_username", username)
    page.fill("#id_password", password)
    page.click("button[type=submit]")
    return errors
