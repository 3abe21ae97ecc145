"""The real mail servers of scripts/ensure-mail (Dovecot IMAP, Postfix SMTP on 127.0.0.1), and helpers.

Every test starts from empty mailboxes: `mail` wipes the test users' folders first. The servers
hold nothing but test mail, so wiping them is safe.
"""

from __future__ import annotations

import imaplib
import os
import smtplib
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from email import policy
from email.message import EmailMessage
from email.parser import BytesParser
from pathlib import Path
from typing import Any

import pytest

from hubbub.connectors.base import AccountConfig
from hubbub.connectors.email import EmailConnector

ROOT = Path(__file__).resolve().parents[4]
DOMAIN = "hubbub.test"
BRAND = f"brand@{DOMAIN}"
CUSTOMER = f"customer@{DOMAIN}"
PASSWORDS = {BRAND: "brand-password", CUSTOMER: "customer-password"}
KEPT_FOLDERS = {"INBOX", "Sent", "Drafts"}


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "mail: uses the local Dovecot/Postfix test servers (scripts/ensure-mail)")


@dataclass(frozen=True)
class MailServer:
    host: str
    imap_port: int
    smtp_port: int
    imaps_port: int
    smtps_port: int
    # The servers' self-signed certificate (PEM), for the connector's tls_ca setting.
    certificate: str

    def imap(self, user: str = BRAND) -> imaplib.IMAP4:
        conn = imaplib.IMAP4(self.host, self.imap_port, timeout=10)
        conn.login(user, PASSWORDS[user])
        return conn

    def connector(
        self, user: str = BRAND, password: str | None = None, smtp_password: str = "", **settings: Any
    ) -> EmailConnector:
        values: dict[str, Any] = {
            "imap_host": self.host,
            "imap_port": self.imap_port,
            "imap_tls": "none",
            "smtp_host": self.host,
            "smtp_port": self.smtp_port,
            "smtp_tls": "none",
            "from_address": user,
            "from_name": "Brand Support",
            "mailbox": "INBOX",
            "allow_private": True,
        }
        values.update(settings)
        return EmailConnector(
            AccountConfig(
                network="email",
                handle=user,
                credentials={
                    "username": user,
                    "password": PASSWORDS[user] if password is None else password,
                    "smtp_password": smtp_password,
                },
                settings=values,
            )
        )

    def send(self, message: EmailMessage, sender: str = CUSTOMER, to: str = BRAND) -> None:
        """Deliver through Postfix, logged in as the sender."""
        with smtplib.SMTP(self.host, self.smtp_port, timeout=10) as smtp:
            smtp.login(sender, PASSWORDS[sender])
            smtp.send_message(message, from_addr=sender, to_addrs=[to])

    def append(self, raw: bytes, user: str = BRAND, folder: str = "INBOX") -> None:
        """Put a message straight into a folder (for messages Postfix would not pass unchanged)."""
        conn = self.imap(user)
        try:
            typ, data = conn.append(f'"{folder}"', None, None, raw)
            assert typ == "OK", data
        finally:
            conn.logout()

    def wait_for(
        self, message_id: str, user: str = BRAND, folder: str = "INBOX", count: int = 1, timeout: float = 15
    ) -> list[bytes]:
        """The full messages in `folder` with that Message-ID, once `count` have arrived or `timeout` passed."""
        deadline = time.monotonic() + timeout
        conn = self.imap(user)
        try:
            while True:
                conn.select(f'"{folder}"', readonly=True)
                _, data = conn.uid("SEARCH", "HEADER", "Message-ID", f'"<{message_id}>"')
                uids = data[0].split()
                if len(uids) >= count or time.monotonic() > deadline:
                    found = []
                    for uid in uids:
                        _, fetched = conn.uid("FETCH", uid, "(BODY.PEEK[])")
                        found.append(fetched[0][1])
                    return found
                time.sleep(0.05)
        finally:
            conn.logout()

    def wipe(self) -> None:
        for user in PASSWORDS:
            conn = self.imap(user)
            try:
                _, folders = conn.list('""', "*")
                for line in folders:
                    name = line.decode().rsplit(' "/" ', 1)[-1].strip('"')
                    if name in KEPT_FOLDERS:
                        conn.select(f'"{name}"')
                        conn.uid("STORE", "1:*", "+FLAGS.SILENT", r"(\Deleted)")
                        conn.expunge()
                        conn.close()
                    else:
                        conn.delete(f'"{name}"')
            finally:
                conn.logout()


_setup_error: list[str] = []


@pytest.fixture(scope="session")
def mail_server() -> MailServer:
    if _setup_error:  # fail every later test at once rather than running the script again
        pytest.fail(_setup_error[0])
    result = subprocess.run(
        [str(ROOT / "scripts" / "ensure-mail")], capture_output=True, text=True, timeout=300, check=False
    )
    if result.returncode != 0:
        _setup_error.append(f"scripts/ensure-mail failed ({result.returncode}):\n{result.stderr}{result.stdout}")
        pytest.fail(_setup_error[0])
    directory = Path(os.environ.get("HUBBUB_MAIL_DIR", "/var/lib/hubbub-mail"))
    return MailServer(
        host="127.0.0.1",
        imap_port=int(os.environ.get("HUBBUB_MAIL_IMAP_PORT", "1143")),
        smtp_port=int(os.environ.get("HUBBUB_MAIL_SMTP_PORT", "2525")),
        imaps_port=int(os.environ.get("HUBBUB_MAIL_IMAPS_PORT", "1993")),
        smtps_port=int(os.environ.get("HUBBUB_MAIL_SMTPS_PORT", "4650")),
        certificate=(directory / "tls" / "cert.pem").read_text(),
    )


@pytest.fixture
def mail(mail_server: MailServer) -> Iterator[MailServer]:
    mail_server.wipe()
    yield mail_server


def parse(raw: bytes) -> EmailMessage:
    return BytesParser(policy=policy.default).parsebytes(raw)
