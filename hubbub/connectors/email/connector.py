"""Email: customers' mail read from the brand's mailbox over IMAP, replies sent over SMTP.

Only the standard library is used (imaplib, smtplib, and email with policy=default).

Credentials (AccountConfig.credentials): "username", "password", used for IMAP and SMTP alike
(optional "smtp_username"/"smtp_password" when the SMTP login differs).

Settings (AccountConfig.settings):
    imap_host, imap_port, imap_tls   "ssl" (default; port 993), "starttls" (143) or "none" (143)
    smtp_host, smtp_port, smtp_tls   "starttls" (default; port 587), "ssl" (465) or "none" (25)
    from_address, from_name          the brand's address (default: the IMAP username) and display name
    mailbox                          the folder read for customers' mail, "INBOX" by default
    sent_mailbox                     where sent replies are stored; default the folder marked \\Sent,
                                     else "Sent" (created when missing)
    append_sent                      default True; turn off for providers that file SMTP mail in
                                     Sent by themselves (Gmail), or replies are stored twice
    backfill_limit                   how many of the newest messages a first fetch takes (200)
    fetch_limit                      the most messages one fetch returns (100); `more` says if more wait
    tls_ca                           PEM text of the CA certificate(s) to trust instead of the system's
                                     (an on-premise server with its own CA); certificates are always verified
    allow_private                    connect to private/loopback addresses (tests, on-premise servers)

fetch cursor (plain JSON):
    {"uidvalidity": 1795335121, "last_uid": 42, "recent": [["<message id>", "2025-11-22"], ...]}
`recent` holds the Message-IDs (bare, without <>) of the last RECENT_MAX messages returned, with
the day the server received each. When the server reports another UIDVALIDITY (the folder was
rebuilt or restored and its UIDs mean something else), the folder is read again from the day of
the oldest remembered message, and messages whose Message-ID is remembered are skipped, so nothing
is returned twice. Messages are always read with EXAMINE and BODY.PEEK: nothing is marked as read,
moved or deleted.

Payload of one message (RawPost.payload, plain JSON; see `parse_message`):
    message_id, message_id_synthetic, uid, uidvalidity, mailbox, received_at, size,
    from [[name, address]], to, cc, reply_to, subject, date (header as sent), date_iso (or null),
    in_reply_to, references [ids], text, html, attachments [{filename, content_type, size}],
    headers {auto-submitted, precedence, list-id, content-language, ...}, problems [str]
External IDs are bare Message-IDs ("abc@example.com", no angle brackets); a message without a
usable Message-ID gets "sha256-<hex>@hubbub.invalid" from its content, stable across fetches.

Replies: Message-ID "<{idempotency key}@hubbub>", In-Reply-To and References pointing at the
customer's message, Subject "Re: <subject of that message>" when it is found in the mailbox
(`Reply` carries no subject). Before sending, the Sent folder is searched for that Message-ID, so a
retry after a send that did succeed does not send again; after sending the message is APPENDed to
the Sent folder so that the check works. One gap remains: a process killed between the SMTP
send and the APPEND would send again on retry.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import hashlib
import imaplib
import logging
import re
import smtplib
import socket
import ssl
import time
from collections.abc import Iterator
from email import policy
from email.message import EmailMessage, Message
from email.parser import BytesParser
from email.utils import format_datetime, formataddr, getaddresses, parsedate_to_datetime
from html.parser import HTMLParser
from typing import Any

from hubbub.connectors.base import (
    AccountConfig,
    ConnectorError,
    FetchResult,
    MalformedEvent,
    PermanentError,
    Post,
    Published,
    RawPost,
    Reply,
    TransientError,
)
from hubbub.lib.safehttp import is_public_address

log = logging.getLogger(__name__)

TIMEOUT = 30.0
DEFAULT_BACKFILL = 200
DEFAULT_FETCH_LIMIT = 100
# Message-IDs remembered in the cursor for de-duplication after a UIDVALIDITY change.
RECENT_MAX = 500
# UIDs per IMAP FETCH command.
BATCH = 25
# The widest UID range searched at once for new messages.
UID_WINDOW = 20_000
# The most of one message that is downloaded (a larger one is read truncated).
MAX_MESSAGE_BYTES = 10 * 1024 * 1024
# Stop a fetch early once this much has been downloaded (`more` is set).
MAX_FETCH_BYTES = 40 * 1024 * 1024
MAX_TEXT = 200_000  # characters of text and of HTML kept
MAX_HEADER = 2_000  # characters of one header value kept
MAX_ADDRESSES = 50
MAX_PARTS = 200  # MIME parts looked at
MAX_DEPTH = 20  # multipart nesting followed
MAX_ATTACHMENTS = 50
MAX_REFERENCES = 50
TLS_MODES = ("ssl", "starttls", "none")
KEPT_HEADERS = (
    "auto-submitted",
    "precedence",
    "list-id",
    "list-unsubscribe",
    "x-auto-response-suppress",
    "content-language",
    "return-path",
    "x-mailer",
    "user-agent",
    "authentication-results",
)

_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
# A Message-ID we store and write back into headers and IMAP searches: printable ASCII without
# spaces, quotes, backslashes or angle brackets, one "@".
_MESSAGE_ID = re.compile(r"^[!#-;=?-\[\]-~]{1,250}@[!#-;=?-\[\]-~]{1,250}$")
_MSGID_IN_HEADER = re.compile(r"<([^<>\s]{1,500})>")
_ADDRESS = re.compile(r"^[A-Za-z0-9.!#$%&'*+/=?^_`{|}~-]{1,64}@[A-Za-z0-9](?:[A-Za-z0-9.-]{0,251}[A-Za-z0-9])?$")
_KEY = re.compile(r"^[A-Za-z0-9._-]{1,120}$")


class _Blocked(Exception):
    """The mail server's host resolves to an address we must not connect to."""


class EmailConnector:
    network = "email"

    def __init__(self, config: AccountConfig):
        self.config = config
        settings = config.settings
        credentials = config.credentials
        self._config_error = ""
        self.username = str(credentials.get("username") or "")
        self.password = str(credentials.get("password") or "")
        self.smtp_username = str(credentials.get("smtp_username") or self.username)
        self.smtp_password = str(credentials.get("smtp_password") or self.password)
        self.allow_private = bool(settings.get("allow_private", False))
        self.imap_host = str(settings.get("imap_host") or "").strip()
        self.smtp_host = str(settings.get("smtp_host") or "").strip()
        self.imap_tls = settings.get("imap_tls") or "ssl"
        self.smtp_tls = settings.get("smtp_tls") or "starttls"
        for name, mode in (("imap_tls", self.imap_tls), ("smtp_tls", self.smtp_tls)):
            if mode not in TLS_MODES:
                self._config_error = f"{name} must be one of {TLS_MODES}, not {mode!r}"
        self.imap_port = self._port(settings.get("imap_port"), 993 if self.imap_tls == "ssl" else 143, "imap_port")
        smtp_default = {"ssl": 465, "starttls": 587}.get(self.smtp_tls, 25)
        self.smtp_port = self._port(settings.get("smtp_port"), smtp_default, "smtp_port")
        self.mailbox = str(settings.get("mailbox") or "INBOX")
        self.sent_mailbox = str(settings.get("sent_mailbox") or "")
        self.append_sent = bool(settings.get("append_sent", True))
        self.tls_ca = str(settings.get("tls_ca") or "")
        self._context: ssl.SSLContext | None = None
        self.from_name = _clean(str(settings.get("from_name") or ""))[:200]
        from_address = str(settings.get("from_address") or "")
        if not from_address and "@" in self.username:
            from_address = self.username
        if not from_address and "@" in config.handle:
            from_address = config.handle
        self.from_address = from_address.strip().lower()
        self.backfill_limit = self._count(settings.get("backfill_limit"), DEFAULT_BACKFILL, "backfill_limit")
        self.fetch_limit = self._count(settings.get("fetch_limit"), DEFAULT_FETCH_LIMIT, "fetch_limit")
        for name, value in (("mailbox", self.mailbox), ("sent_mailbox", self.sent_mailbox)):
            if _CONTROL.search(value) or '"' in value or "\\" in value:
                self._config_error = f"{name} {value!r} is not a usable folder name"

    def _port(self, value: Any, default: int, name: str) -> int:
        if value in (None, ""):
            return default
        try:
            port = int(value)
        except (TypeError, ValueError):
            port = 0
        if not 0 < port < 65536:
            self._config_error = f"{name} {value!r} is not a port number"
            return default
        return port

    def _count(self, value: Any, default: int, name: str) -> int:
        if value in (None, ""):
            return default
        try:
            return max(1, int(value))
        except (TypeError, ValueError):
            self._config_error = f"{name} {value!r} is not a number"
            return default

    def _check_config(self, *, smtp: bool = False) -> None:
        problem = self._config_error
        if not self.imap_host:
            problem = problem or "no imap_host"
        if smtp and not self.smtp_host:
            problem = problem or "no smtp_host"
        if smtp and not _ADDRESS.match(self.from_address):
            problem = problem or f"from_address {self.from_address!r} is not an email address"
        if not self.username or not self.password:
            problem = problem or "no username or password"
        if problem:
            raise PermanentError(f"email account misconfigured: {problem}")

    def _tls(self) -> ssl.SSLContext:
        if self._context is None:
            try:
                self._context = ssl.create_default_context(cadata=self.tls_ca or None)
            except (ssl.SSLError, ValueError) as exc:
                raise PermanentError(
                    f"email account misconfigured: tls_ca is not a usable certificate ({exc})"
                ) from exc
        return self._context

    # -- fetch -----------------------------------------------------------------------------

    def fetch(self, cursor: dict[str, Any]) -> FetchResult:
        self._check_config()
        with self._imap() as imap:
            uidvalidity = self._select(imap, self.mailbox, readonly=True)
            return self._fetch_new(imap, cursor or {}, uidvalidity)

    def _new_uids(self, imap: imaplib.IMAP4, last_uid: int, uidnext: int | None) -> tuple[list[int], int, bool]:
        """UIDs above last_uid, the UID the cursor may move to, and whether more may lie beyond.

        Searched in windows of UID_WINDOW UIDs, so the answer stays below imaplib's 1 MB line limit
        however many messages arrived; empty windows below UIDNEXT are stepped over.
        """
        if uidnext is None:  # the server did not say: one open-ended search
            return [uid for uid in self._search(imap, "UID", f"{last_uid + 1}:*") if uid > last_uid], last_uid, False
        low = last_uid + 1
        for _ in range(100):
            if low >= uidnext:
                return [], last_uid, False
            high = low + UID_WINDOW - 1
            uids = [uid for uid in self._search(imap, "UID", f"{low}:{high}") if uid > last_uid]
            if uids:
                return uids, last_uid, high < uidnext - 1
            # Nothing there, and UIDs are never reused; but never past UIDNEXT, where new mail goes.
            last_uid = min(high, uidnext - 1)
            low = last_uid + 1
        return [], last_uid, True

    def _fetch_new(self, imap: imaplib.IMAP4, cursor: dict[str, Any], uidvalidity: int) -> FetchResult:
        recent = _recent(cursor.get("recent"))
        seen = {message_id for message_id, _ in recent}
        last_uid = cursor.get("last_uid") if isinstance(cursor.get("last_uid"), int) else 0
        known = isinstance(cursor.get("uidvalidity"), int) and "last_uid" in cursor
        unfinished = False
        exists = _first_int(imap.response("EXISTS")[1]) or 0
        uidnext = _first_int(imap.response("UIDNEXT")[1])
        if known and cursor["uidvalidity"] == uidvalidity:
            uids, last_uid, unfinished = self._new_uids(imap, last_uid, uidnext)
        elif known and recent:
            # The folder's UIDs were renumbered: read it again from the oldest remembered day and
            # skip what was already returned (by Message-ID).
            oldest = min(day for _, day in recent)
            since = dt.date.fromisoformat(oldest) - dt.timedelta(days=1)
            log.warning("UIDVALIDITY of %s changed; rereading it since %s", self.mailbox, since)
            uids = self._search(imap, "SINCE", since.strftime("%d-%b-%Y"))
            last_uid = 0
        else:
            # First fetch (or a renumbered folder we remember nothing of): the newest messages only.
            # By sequence number: the newest `backfill_limit` without listing every UID.
            uids = self._search(imap, f"{max(1, exists - self.backfill_limit + 1)}:*") if exists else []
            last_uid = 0
        uids.sort()

        posts: list[RawPost] = []
        taken_bytes = 0
        more = unfinished
        position = 0
        while position < len(uids):
            if len(posts) >= self.fetch_limit or taken_bytes >= MAX_FETCH_BYTES:
                more = True
                break
            batch = uids[position : position + BATCH]
            heads = self._fetch_items(imap, batch, "(UID RFC822.SIZE BODY.PEEK[HEADER.FIELDS (MESSAGE-ID)])")
            for uid in batch:
                if len(posts) >= self.fetch_limit or taken_bytes >= MAX_FETCH_BYTES:
                    more = True
                    break
                position += 1
                head = heads.get(uid)
                if head is None:  # expunged meanwhile
                    last_uid = max(last_uid, uid)
                    continue
                header_id = _message_id_of(head[1])
                if header_id and header_id in seen:
                    last_uid = max(last_uid, uid)
                    continue
                fetched = self._fetch_items(imap, [uid], f"(UID INTERNALDATE BODY.PEEK[]<0.{MAX_MESSAGE_BYTES}>)")
                if uid not in fetched:
                    last_uid = max(last_uid, uid)
                    continue
                meta, raw = fetched[uid]
                size = _int_item(head[0], "RFC822.SIZE") or len(raw)
                taken_bytes += len(raw)
                payload = parse_message(raw, size=size, received_at=_internaldate(meta))
                payload.update(uid=uid, uidvalidity=uidvalidity, mailbox=self.mailbox)
                last_uid = max(last_uid, uid)
                if payload["message_id"] in seen:
                    continue
                seen.add(payload["message_id"])
                day = (payload["received_at"] or payload["date_iso"] or dt.datetime.now(dt.UTC).isoformat())[:10]
                recent.append((payload["message_id"], day))
                posts.append(RawPost(external_id=payload["message_id"], payload=payload))
        if not more and uidnext:
            # Everything below UIDNEXT was read or deliberately left (older than a backfill or a
            # reread): never come back for it, even in an empty folder.
            last_uid = max(last_uid, uidnext - 1)
        new_cursor = dict(cursor)
        new_cursor.update(
            uidvalidity=uidvalidity,
            last_uid=last_uid,
            recent=[list(item) for item in recent[-RECENT_MAX:]],
        )
        return FetchResult(posts=posts, cursor=new_cursor, more=more)

    # -- normalize -------------------------------------------------------------------------

    def normalize(self, payload: dict[str, Any]) -> Post:
        if not isinstance(payload, dict):
            raise MalformedEvent(f"an email payload must be a JSON object, not {type(payload).__name__}")
        message_id = payload.get("message_id")
        if not isinstance(message_id, str) or not message_id:
            raise MalformedEvent("the email has no message_id")
        where = f"email {message_id}"
        senders = payload.get("from")
        if not isinstance(senders, list) or not senders:
            raise MalformedEvent(f"{where} has no sender (From)")
        sender = senders[0]
        if (
            not isinstance(sender, list | tuple)
            or len(sender) != 2
            or not all(isinstance(v, str) for v in sender)
            or "@" not in sender[1]
        ):
            raise MalformedEvent(f"{where}: the sender {sender!r} is not an email address")
        name, address = sender
        subject = _text_field(payload, "subject", where)
        body = strip_quoted(_text_field(payload, "text", where))
        text = f"{subject}\n\n{body}".strip() if subject and body else (subject or body)
        created_at = _moment(payload.get("date_iso")) or _moment(payload.get("received_at"))
        if created_at is None:
            raise MalformedEvent(f"{where} has neither a usable Date nor a received time")
        in_reply_to = payload.get("in_reply_to")
        if not in_reply_to:
            references = payload.get("references")
            if isinstance(references, list) and references:
                in_reply_to = references[-1]
        if in_reply_to is not None and (not isinstance(in_reply_to, str) or not _MESSAGE_ID.match(in_reply_to)):
            in_reply_to = None
        language = ""
        headers = payload.get("headers")
        if isinstance(headers, dict) and isinstance(headers.get("content-language"), str):
            language = headers["content-language"].split(",")[0].strip()[:20]
        address = address.strip().lower()
        return Post(
            external_id=message_id,
            author_handle=address,
            author_name=name.strip(),
            author_external_id=address,
            text=text[:MAX_TEXT],
            created_at=created_at,
            in_reply_to_external_id=in_reply_to or None,
            is_private=True,
            from_brand=bool(self.from_address) and address == self.from_address,
            language=language,
            html=_text_field(payload, "html", where),
        )

    # -- publish ---------------------------------------------------------------------------

    def publish(self, reply: Reply) -> Published:
        self._check_config(smtp=True)
        to = reply.to_handle.strip()
        if _CONTROL.search(reply.to_handle) or not _ADDRESS.match(to):
            raise PermanentError(f"{reply.to_handle!r} is not an email address to reply to", affects_account=False)
        parent = reply.in_reply_to_external_id
        if parent is not None:
            parent = parent.strip().strip("<>")
            if not _MESSAGE_ID.match(parent):
                raise PermanentError(f"{reply.in_reply_to_external_id!r} is not a Message-ID", affects_account=False)
        if not reply.text.strip():
            raise PermanentError("the reply has no text", affects_account=False)
        message_id = reply_message_id(reply.idempotency_key)

        with self._imap() as imap:
            sent_box = self._sent_folder(imap)
            # A retry of a reply that was sent (the first attempt's result was lost): don't send again.
            self._select(imap, sent_box, readonly=True)
            if self._search(imap, "HEADER", "Message-ID", f'"<{message_id}>"'):
                log.info("reply %s is already in %s; not sending it again", message_id, sent_box)
                return Published(
                    external_id=message_id,
                    payload={"message_id": message_id, "to": to, "already_sent": True, "sent_mailbox": sent_box},
                )
            subject, references = self._thread_of(imap, parent)
            message = self._compose(reply.text, to, message_id, parent, subject, references)
            data = message.as_bytes(policy=policy.SMTP)
            self._send(message, to)
            appended = False
            if self.append_sent:
                try:
                    when = imaplib.Time2Internaldate(time.time())
                    self._imap_call(imap.append, _quote(sent_box), r"(\Seen)", when, data)
                    appended = True
                except ConnectorError as exc:
                    # Sent; only the copy for the idempotency check and the brand's records is missing.
                    log.warning("reply %s was sent but not stored in %s: %s", message_id, sent_box, exc)
        return Published(
            external_id=message_id,
            payload={
                "message_id": message_id,
                "to": to,
                "subject": str(message["Subject"]),
                "in_reply_to": parent,
                "references": references,
                "already_sent": False,
                "sent_mailbox": sent_box if appended else None,
            },
        )

    def _compose(
        self, text: str, to: str, message_id: str, parent: str | None, subject: str, references: list[str]
    ) -> EmailMessage:
        message = EmailMessage(policy=policy.default)
        message["From"] = formataddr((self.from_name, self.from_address))
        message["To"] = to
        message["Subject"] = subject
        message["Date"] = format_datetime(dt.datetime.now(dt.UTC))
        message["Message-ID"] = f"<{message_id}>"
        if parent:
            message["In-Reply-To"] = f"<{parent}>"
            message["References"] = " ".join(f"<{ref}>" for ref in references)
        message.set_content(text.replace("\r\n", "\n"))
        return message

    def _thread_of(self, imap: imaplib.IMAP4, parent: str | None) -> tuple[str, list[str]]:
        """Subject and References for a reply to `parent`, read from the customer's message if found."""
        if not parent:
            return "Re: your message", []
        subject = ""
        references: list[str] = []
        self._select(imap, self.mailbox, readonly=True)
        uids = self._search(imap, "HEADER", "Message-ID", f'"<{parent}>"')
        if uids:
            found = self._fetch_items(imap, uids[-1:], "(UID BODY.PEEK[HEADER.FIELDS (SUBJECT REFERENCES)])")
            if found:
                head = BytesParser(policy=policy.default).parsebytes(next(iter(found.values()))[1], headersonly=True)
                subject = _header(head, "Subject")
                references = _message_ids(_header(head, "References"))
        subject = _clean(subject)[:250].strip() or "your message"
        if not re.match(r"(?i)re\s*:", subject):
            subject = f"Re: {subject}"
        references = [ref for ref in references if ref != parent][-(MAX_REFERENCES - 1) :] + [parent]
        return subject, references

    def _send(self, message: EmailMessage, to: str) -> None:
        where = f"SMTP server {self.smtp_host}:{self.smtp_port}"
        try:
            smtp = self._smtp()
            try:
                smtp.ehlo()
                if self.smtp_tls == "starttls":
                    smtp.starttls(context=self._tls())
                    smtp.ehlo()
                if self.smtp_username and smtp.has_extn("auth"):
                    smtp.login(self.smtp_username, self.smtp_password)
                smtp.send_message(message, from_addr=self.from_address, to_addrs=[to])
            finally:
                try:
                    smtp.quit()
                except (smtplib.SMTPException, OSError):
                    smtp.close()
        except _Blocked as exc:
            raise PermanentError(f"refusing to connect to {where}: {exc}") from exc
        except smtplib.SMTPAuthenticationError as exc:
            raise PermanentError(f"{where} refused the login: {_smtp_detail(exc)}") from exc
        except smtplib.SMTPNotSupportedError as exc:
            raise PermanentError(f"{where} does not support what is needed: {exc}") from exc
        except smtplib.SMTPRecipientsRefused as exc:
            code, detail = next(iter(exc.recipients.values()), (0, b""))
            text = f"{where} refused the recipient {to} ({code} {_decode(detail)})"
            if 400 <= code < 500:
                raise TransientError(text) from exc
            raise PermanentError(text, affects_account=False) from exc
        except smtplib.SMTPSenderRefused as exc:
            text = f"{where} refused the sender {self.from_address} ({exc.smtp_code} {_decode(exc.smtp_error)})"
            if 400 <= exc.smtp_code < 500:
                raise TransientError(text) from exc
            raise PermanentError(text) from exc
        except smtplib.SMTPResponseException as exc:
            text = f"{where} failed ({exc.smtp_code} {_decode(exc.smtp_error)})"
            if 500 <= exc.smtp_code < 600:
                raise PermanentError(text, affects_account=False) from exc
            raise TransientError(text) from exc
        except ssl.SSLCertVerificationError as exc:
            raise PermanentError(f"{where} has a certificate that cannot be verified: {exc}") from exc
        except (smtplib.SMTPException, OSError) as exc:
            raise TransientError(f"cannot send through {where}: {exc}") from exc

    def _smtp(self) -> smtplib.SMTP:
        if self.smtp_tls == "ssl":
            return _SMTP_SSL(
                self.smtp_host,
                self.smtp_port,
                timeout=TIMEOUT,
                context=self._tls(),
                allow_private=self.allow_private,
            )
        return _SMTP(self.smtp_host, self.smtp_port, timeout=TIMEOUT, allow_private=self.allow_private)

    # -- IMAP ------------------------------------------------------------------------------

    def _imap(self) -> _Session:
        return _Session(self)

    def _open_imap(self) -> imaplib.IMAP4:
        where = f"IMAP server {self.imap_host}:{self.imap_port}"
        try:
            if self.imap_tls == "ssl":
                imap: imaplib.IMAP4 = _IMAP4_SSL(
                    self.imap_host,
                    self.imap_port,
                    ssl_context=self._tls(),
                    timeout=TIMEOUT,
                    allow_private=self.allow_private,
                )
            else:
                imap = _IMAP4(self.imap_host, self.imap_port, timeout=TIMEOUT, allow_private=self.allow_private)
            if self.imap_tls == "starttls":
                imap.starttls(self._tls())
        except _Blocked as exc:
            raise PermanentError(f"refusing to connect to {where}: {exc}") from exc
        except ssl.SSLCertVerificationError as exc:
            raise PermanentError(f"{where} has a certificate that cannot be verified: {exc}") from exc
        except imaplib.IMAP4.abort as exc:
            raise TransientError(f"{where} dropped the connection: {exc}") from exc
        except imaplib.IMAP4.error as exc:
            raise PermanentError(f"{where} cannot be used: {exc}") from exc
        except OSError as exc:
            raise TransientError(f"cannot reach {where}: {exc}") from exc
        try:
            if self.username.isascii() and self.password.isascii():
                imap.login(self.username, self.password)
            else:
                credentials = f"\0{self.username}\0{self.password}".encode()
                imap.authenticate("PLAIN", lambda _challenge: credentials)
        except imaplib.IMAP4.abort as exc:
            imap.shutdown()
            raise TransientError(f"{where} dropped the connection: {exc}") from exc
        except imaplib.IMAP4.error as exc:
            imap.shutdown()
            detail = _decode(exc.args[0] if exc.args else b"")
            if "[UNAVAILABLE]" in detail or "[INUSE]" in detail:
                raise TransientError(f"{where} cannot log in now: {detail}") from exc
            raise PermanentError(f"{where} refused the login for {self.username}: {detail}") from exc
        except OSError as exc:
            imap.shutdown()
            raise TransientError(f"lost the connection to {where}: {exc}") from exc
        return imap

    def _imap_call(self, fn: Any, *args: Any) -> list[Any]:
        where = f"IMAP server {self.imap_host}:{self.imap_port}"
        try:
            typ, data = fn(*args)
        except imaplib.IMAP4.abort as exc:
            raise TransientError(f"{where} dropped the connection: {exc}") from exc
        except imaplib.IMAP4.error as exc:
            raise PermanentError(f"{where} refused {_command(fn, args)}: {exc}") from exc
        except OSError as exc:
            raise TransientError(f"lost the connection to {where}: {exc}") from exc
        if typ != "OK":
            detail = _decode(data[0] if data else b"")
            if "[UNAVAILABLE]" in detail or "[INUSE]" in detail or "[LIMIT]" in detail or "[SERVERBUG]" in detail:
                raise TransientError(f"{where} could not do {_command(fn, args)} now: {detail}")
            raise PermanentError(f"{where} refused {_command(fn, args)}: {detail}")
        return data

    def _select(self, imap: imaplib.IMAP4, mailbox: str, readonly: bool) -> int:
        self._imap_call(imap.select, _quote(mailbox), readonly)
        _, values = imap.response("UIDVALIDITY")
        try:
            return int(values[0])
        except (TypeError, ValueError, IndexError) as exc:
            raise TransientError(f"the IMAP server gave no UIDVALIDITY for {mailbox}") from exc

    def _search(self, imap: imaplib.IMAP4, *criteria: str) -> list[int]:
        data = self._imap_call(imap.uid, "SEARCH", *criteria)
        return [int(uid) for chunk in data if chunk for uid in _decode(chunk).split() if uid.isdigit()]

    def _fetch_items(self, imap: imaplib.IMAP4, uids: list[int], items: str) -> dict[int, tuple[bytes, bytes]]:
        """UID -> (the response's item text, its one literal) for each message the server returned."""
        if not uids:
            return {}
        data = self._imap_call(imap.uid, "FETCH", ",".join(map(str, uids)), items)
        found: dict[int, tuple[bytes, bytes]] = {}
        for head, literal in _fetch_records(data):
            uid = _int_item(head, "UID")
            if uid is not None and uid in uids:
                found[uid] = (head, literal)
        return found

    def _sent_folder(self, imap: imaplib.IMAP4) -> str:
        if self.sent_mailbox:
            name = self.sent_mailbox
        else:
            name = "Sent"
            for line in self._imap_call(imap.list, '""', "*"):
                text = _decode(line) if isinstance(line, bytes) else ""
                match = re.match(r'\((?P<flags>[^)]*)\)\s+(?:"[^"]*"|NIL)\s+(?P<name>.+)$', text)
                if match and "\\sent" in match["flags"].lower():
                    name = match["name"].strip().strip('"')
                    break
        listed = self._imap_call(imap.list, '""', _quote(name))
        if not any(isinstance(line, bytes) and line for line in listed):
            self._imap_call(imap.create, _quote(name))
        return name


class _Session:
    """`with connector._imap() as imap:` a logged-in IMAP connection, logged out afterwards."""

    def __init__(self, connector: EmailConnector):
        self.connector = connector
        self.imap: imaplib.IMAP4 | None = None

    def __enter__(self) -> imaplib.IMAP4:
        self.imap = self.connector._open_imap()
        return self.imap

    def __exit__(self, *exc: object) -> None:
        if self.imap is not None:
            with contextlib.suppress(imaplib.IMAP4.error, OSError):
                self.imap.logout()


# -- connections that refuse private addresses -------------------------------------------------


def _connect(host: str, port: int, timeout: float | None, allow_private: bool) -> socket.socket:
    """A TCP connection to host, refused (before connecting) if any of its addresses is not public.

    The addresses checked are the ones connected to, so a second DNS answer cannot slip in between.
    """
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except socket.gaierror as exc:
        raise OSError(f"cannot resolve {host}: {exc}") from exc
    if not allow_private:
        for info in infos:
            address = str(info[4][0])
            if not is_public_address(address):
                raise _Blocked(f"{host} resolves to {address}, a private or internal address")
    error: OSError | None = None
    for family, kind, proto, _, address in infos:
        sock = socket.socket(family, kind, proto)
        try:
            sock.settimeout(timeout)
            sock.connect(address)
            return sock
        except OSError as exc:
            sock.close()
            error = exc
    raise error or OSError(f"no address for {host}")


class _IMAP4(imaplib.IMAP4):
    def __init__(self, host: str, port: int, *, timeout: float, allow_private: bool):
        self._allow_private = allow_private
        super().__init__(host, port, timeout=timeout)

    def _create_socket(self, timeout: float | None = None) -> socket.socket:
        return _connect(self.host, self.port, timeout, self._allow_private)


class _IMAP4_SSL(imaplib.IMAP4_SSL):
    def __init__(self, host: str, port: int, *, ssl_context: ssl.SSLContext, timeout: float, allow_private: bool):
        self._allow_private = allow_private
        super().__init__(host, port, ssl_context=ssl_context, timeout=timeout)

    def _create_socket(self, timeout: float | None = None) -> socket.socket:
        sock = _connect(self.host, self.port, timeout, self._allow_private)
        return self.ssl_context.wrap_socket(sock, server_hostname=self.host)


class _SMTP(smtplib.SMTP):
    def __init__(self, host: str, port: int, *, timeout: float, allow_private: bool):
        self._allow_private = allow_private
        super().__init__(host, port, timeout=timeout)

    def _get_socket(self, host: str, port: int, timeout: float) -> socket.socket:
        return _connect(host, port, timeout, self._allow_private)


class _SMTP_SSL(smtplib.SMTP_SSL):
    def __init__(self, host: str, port: int, *, timeout: float, context: ssl.SSLContext, allow_private: bool):
        self._allow_private = allow_private
        super().__init__(host, port, timeout=timeout, context=context)

    def _get_socket(self, host: str, port: int, timeout: float) -> socket.socket:
        sock = _connect(host, port, timeout, self._allow_private)
        return self.context.wrap_socket(sock, server_hostname=self._host)


# -- reading messages --------------------------------------------------------------------------


def reply_message_id(idempotency_key: str) -> str:
    """The bare Message-ID of the reply sent for an idempotency key."""
    key = idempotency_key.strip()
    if not _KEY.match(key):
        key = "k" + hashlib.sha256(idempotency_key.encode()).hexdigest()[:40]
    return f"{key}@hubbub"


def parse_message(raw: bytes, size: int | None = None, received_at: str | None = None) -> dict[str, Any]:
    """One RFC 5322 message as the JSON payload described in the module docstring.

    Hostile input is read as far as it safely can be, and what was cut is listed in "problems":
    parts nested deeper than MAX_DEPTH or beyond MAX_PARTS are not read, text and HTML are cut at
    MAX_TEXT characters, undecodable text is decoded with replacement characters, header values
    lose CR/LF and other control characters, and attachments are listed, never kept.
    """
    problems: list[str] = []
    size = len(raw) if size is None else size
    if size > len(raw):
        problems.append(f"message of {size} bytes read truncated to {len(raw)}")
    try:
        # Each multipart level costs the parser a stack frame and time: refuse bombs before parsing.
        if raw.lower().count(b"multipart/") > 2 * MAX_PARTS:
            raise RecursionError
        message = BytesParser(policy=policy.default).parsebytes(raw)
    except RecursionError:
        problems.append("MIME structure too deeply nested or too large to parse; headers only")
        message = BytesParser(policy=policy.default).parsebytes(raw, headersonly=True)
        message.set_payload("")

    original_id = _header(message, "Message-ID")
    ids = _message_ids(original_id)
    message_id = ids[0] if ids and _MESSAGE_ID.match(ids[0]) else ""
    synthetic = not message_id
    if synthetic:
        if original_id:
            problems.append("unusable Message-ID header")
        message_id = f"sha256-{hashlib.sha256(raw).hexdigest()[:40]}@hubbub.invalid"

    date = _header(message, "Date")
    date_iso = None
    if date:
        try:
            moment = parsedate_to_datetime(date)
            date_iso = (moment if moment.tzinfo else moment.replace(tzinfo=dt.UTC)).isoformat()
        except (TypeError, ValueError, IndexError, OverflowError):
            problems.append("unreadable Date header")
    else:
        problems.append("no Date header")

    text, html, attachments = _body(message, problems)
    in_reply_to = [i for i in _message_ids(_header(message, "In-Reply-To")) if _MESSAGE_ID.match(i)]
    references = [i for i in _message_ids(_header(message, "References")) if _MESSAGE_ID.match(i)]
    headers = {}
    for name in KEPT_HEADERS:
        value = _header(message, name)
        if value:
            headers[name] = value
    senders = _addresses(message, "From")
    if not senders:
        problems.append("no usable From address")
    for defect in list(message.defects)[:10]:
        problems.append(f"defect: {type(defect).__name__}")
    return {
        "message_id": message_id,
        "message_id_synthetic": synthetic,
        "uid": None,
        "uidvalidity": None,
        "mailbox": None,
        "received_at": received_at,
        "size": size,
        "from": senders,
        "to": _addresses(message, "To"),
        "cc": _addresses(message, "Cc"),
        "reply_to": _addresses(message, "Reply-To"),
        "subject": _header(message, "Subject"),
        "date": date,
        "date_iso": date_iso,
        "in_reply_to": in_reply_to[0] if in_reply_to else None,
        "references": references[-MAX_REFERENCES:],
        "text": text,
        "html": html,
        "attachments": attachments,
        "headers": headers,
        "problems": problems[:50],
    }


def _body(message: Message, problems: list[str]) -> tuple[str, str, list[dict[str, Any]]]:
    plain = ""
    html = ""
    attachments: list[dict[str, Any]] = []
    count = 0
    for part, depth in _walk(message):
        count += 1
        if count > MAX_PARTS:
            problems.append(f"more than {MAX_PARTS} MIME parts; the rest not read")
            break
        if depth > MAX_DEPTH:
            problems.append(f"MIME parts nested deeper than {MAX_DEPTH} not read")
            break
        if part.is_multipart():
            continue
        content_type = _clean(part.get_content_type())[:100]
        filename = _filename(part)
        disposition = _clean(str(part.get_content_disposition() or ""))
        if content_type in ("text/plain", "text/html") and disposition != "attachment" and not filename:
            if content_type == "text/plain" and not plain:
                plain = _part_text(part, problems)
                continue
            if content_type == "text/html" and not html:
                html = _part_text(part, problems)
                continue
        if content_type.startswith("multipart/") or content_type == "message/rfc822":
            continue
        if len(attachments) < MAX_ATTACHMENTS:
            attachments.append({"filename": filename, "content_type": content_type, "size": _part_size(part)})
        elif len(attachments) == MAX_ATTACHMENTS:
            problems.append(f"more than {MAX_ATTACHMENTS} attachments; the rest not listed")
            attachments.append({"filename": "…", "content_type": "", "size": 0})
    text = plain or (html_to_text(html) if html else "")
    if len(text) > MAX_TEXT:
        problems.append(f"text cut at {MAX_TEXT} characters")
        text = text[:MAX_TEXT]
    if len(html) > MAX_TEXT:
        problems.append(f"HTML cut at {MAX_TEXT} characters")
        html = html[:MAX_TEXT]
    return text, html, attachments[:MAX_ATTACHMENTS]


def _walk(message: Message) -> Iterator[tuple[Message, int]]:
    """Parts depth first with their nesting depth, iteratively (no recursion on hostile nesting)."""
    stack: list[tuple[Message, int]] = [(message, 0)]
    while stack:
        part, depth = stack.pop()
        yield part, depth
        if part.is_multipart() and depth <= MAX_DEPTH:
            children = part.get_payload()
            if isinstance(children, list):
                stack.extend((child, depth + 1) for child in reversed(children[: MAX_PARTS + 1]))


def _part_text(part: Message, problems: list[str]) -> str:
    try:
        content = part.get_content()
        if isinstance(content, str):
            return content.replace("\r\n", "\n")
    except (LookupError, UnicodeError, ValueError, AssertionError, KeyError) as exc:
        problems.append(f"{part.get_content_type()} part: {type(exc).__name__}; decoded as UTF-8 with replacements")
    data = part.get_payload(decode=True)
    if not isinstance(data, bytes):
        return ""
    return data.decode("utf-8", errors="replace").replace("\r\n", "\n")


def _part_size(part: Message) -> int:
    payload = part.get_payload()
    if not isinstance(payload, str):
        return 0
    encoding = str(part.get("Content-Transfer-Encoding", "")).strip().lower()
    if encoding == "base64":
        return len(re.sub(r"\s", "", payload)) * 3 // 4
    return len(payload)


def _filename(part: Message) -> str:
    try:
        name = part.get_filename() or ""
    except Exception:  # a hostile parameter must not stop the message
        name = ""
    return _clean(str(name))[:255]


def _header(message: Message, name: str) -> str:
    """One header as clean text (encoded words decoded, CR/LF and controls removed), or ""."""
    try:
        value = message.get(name)
        text = "" if value is None else str(value)
    except Exception:  # the email package raises many kinds on hostile headers
        raw = next((v for k, v in message.raw_items() if k.lower() == name.lower()), "")
        text = str(raw)
    return _clean(text)[:MAX_HEADER].strip()


def _addresses(message: Message, name: str) -> list[list[str]]:
    found: list[list[str]] = []
    try:
        header = message.get(name)
        pairs = [(a.display_name, a.addr_spec) for a in header.addresses] if header is not None else []
    except Exception:  # fall back to the lenient parser below
        pairs = getaddresses([_header(message, name)])
    for display, address in pairs:
        address = _clean(address).strip()
        if "@" not in address or len(address) > 320:
            continue
        found.append([_clean(display).strip()[:200], address])
        if len(found) >= MAX_ADDRESSES:
            break
    return found


def _message_ids(value: str) -> list[str]:
    ids = _MSGID_IN_HEADER.findall(value)
    if not ids and value.strip() and " " not in value.strip():
        ids = [value.strip().strip("<>")]  # some mailers leave out the angle brackets
    return ids


def _message_id_of(header_block: bytes) -> str:
    message = BytesParser(policy=policy.default).parsebytes(header_block, headersonly=True)
    ids = _message_ids(_header(message, "Message-ID"))
    return ids[0] if ids and _MESSAGE_ID.match(ids[0]) else ""


def _clean(value: str) -> str:
    return _CONTROL.sub(" ", value.replace("\r\n", " ").replace("\n", " "))


# Attribution lines that start quoted history; everything from them on is dropped.
_HISTORY = re.compile(
    r"^\s*(?:On\b.{0,400}\bwrote:\s*$"  # Gmail, Apple Mail, Thunderbird
    r"|-{2,}\s*Original Message\s*-{2,}"  # Outlook, older mailers
    r"|-{2,}\s*Forwarded message\s*-{2,}"
    r"|_{20,}\s*$)",  # Outlook's rule above "From: … Sent: …"
    re.IGNORECASE,
)


def strip_quoted(text: str) -> str:
    """The new part of a reply: lines quoted with ">" are dropped, and so is everything from an
    attribution line on ("On <date>, <name> wrote:", possibly wrapped over two lines, and holding a
    digit so that "On Monday my son wrote:" is not taken for one), or from an "-----Original
    Message-----" / "---------- Forwarded message ----------" separator or Outlook's line of
    underscores. Only English attributions are known. If nothing would be left, the text is kept
    whole. Signatures are kept."""
    lines = text.replace("\r\n", "\n").replace("\r", "\n").split("\n")
    kept: list[str] = []
    for index, line in enumerate(lines):
        joined = f"{line} {lines[index + 1]}" if index + 1 < len(lines) else line
        if _HISTORY.match(line) and (not line.lstrip().startswith("On ") or re.search(r"\d", line)):
            break
        if line.lstrip().startswith("On ") and _HISTORY.match(joined) and re.search(r"\d", joined):
            break
        if line.lstrip().startswith(">"):
            continue
        kept.append(line.rstrip())
    result = re.sub(r"\n{3,}", "\n\n", "\n".join(kept)).strip()
    return result or text.strip()


class _TextExtractor(HTMLParser):
    SKIPPED = frozenset({"script", "style", "template", "noscript", "iframe", "object", "title", "head"})
    BLOCKS = frozenset({"p", "div", "tr", "li", "h1", "h2", "h3", "h4", "h5", "h6", "blockquote", "table", "pre"})

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.parts: list[str] = []
        self.skipping = 0
        self.size = 0

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in self.SKIPPED:
            self.skipping += 1
        elif (tag == "br" or tag in self.BLOCKS) and not self.skipping:
            self.parts.append("\n")

    def handle_endtag(self, tag: str) -> None:
        if tag in self.SKIPPED:
            self.skipping = max(0, self.skipping - 1)
        elif tag in self.BLOCKS and not self.skipping:
            self.parts.append("\n")

    def handle_data(self, data: str) -> None:
        if not self.skipping and self.size < MAX_TEXT:
            self.parts.append(data)
            self.size += len(data)


def html_to_text(content: str) -> str:
    """An HTML mail body as plain text: tags dropped, blocks and <br> as newlines, entities decoded."""
    parser = _TextExtractor()
    parser.feed(content[: MAX_TEXT * 2])
    parser.close()
    text = "".join(parser.parts).replace("\r\n", "\n").replace("\xa0", " ")
    text = re.sub(r"[ \t]+\n", "\n", text)
    return re.sub(r"\n{3,}", "\n\n", text).strip()


# -- small helpers -----------------------------------------------------------------------------


def _fetch_records(data: list[Any]) -> Iterator[tuple[bytes, bytes]]:
    """(item text, literal) pairs from imaplib's FETCH answer; item text includes what follows the literal."""
    head: bytes | None = None
    literal = b""
    for item in data:
        if isinstance(item, tuple) and len(item) == 2:
            if head is not None:
                yield head, literal
            head, literal = bytes(item[0]), bytes(item[1])
        elif isinstance(item, bytes) and head is not None and not re.match(rb"^\d+ \(", item):
            head += b" " + item  # the rest of the response after the literal, e.g. " UID 7)"
    if head is not None:
        yield head, literal


def _int_item(head: bytes, name: str) -> int | None:
    match = re.search(rb"(?:^|[ (])" + re.escape(name.encode()) + rb" (\d+)", head)
    return int(match.group(1)) if match else None


def _internaldate(head: bytes) -> str | None:
    match = re.search(rb'INTERNALDATE "([^"]+)"', head)
    if not match:
        return None
    try:
        moment = dt.datetime.strptime(match.group(1).decode(), "%d-%b-%Y %H:%M:%S %z")
    except ValueError:
        return None
    return moment.astimezone(dt.UTC).isoformat()


def _first_int(values: Any) -> int | None:
    for value in values if isinstance(values, list) else []:
        text = _decode(value).strip() if value is not None else ""
        if text.isdigit():
            return int(text)
    return None


def _recent(value: Any) -> list[tuple[str, str]]:
    items: list[tuple[str, str]] = []
    for item in value if isinstance(value, list) else []:
        if isinstance(item, list | tuple) and len(item) == 2 and all(isinstance(v, str) for v in item):
            try:
                dt.date.fromisoformat(item[1])
            except ValueError:
                continue
            items.append((item[0], item[1]))
    return items


def _moment(value: Any) -> dt.datetime | None:
    if not isinstance(value, str) or not value:
        return None
    try:
        moment = dt.datetime.fromisoformat(value)
    except ValueError:
        return None
    return moment if moment.tzinfo else moment.replace(tzinfo=dt.UTC)


def _text_field(payload: dict[str, Any], key: str, where: str) -> str:
    value = payload.get(key)
    if value is None:
        return ""
    if not isinstance(value, str):
        raise MalformedEvent(f"{where}: {key} {value!r:.80} is not a string")
    return value


def _quote(mailbox: str) -> str:
    return f'"{mailbox}"'


def _decode(value: Any) -> str:
    if isinstance(value, bytes):
        return value.decode("utf-8", errors="replace")
    return str(value)


def _smtp_detail(exc: smtplib.SMTPResponseException) -> str:
    return f"{exc.smtp_code} {_decode(exc.smtp_error)}"


def _command(fn: Any, args: tuple[Any, ...]) -> str:
    name = getattr(fn, "__name__", "command").upper()
    if name == "UID" and args:
        name = f"UID {args[0]}"
    return name
