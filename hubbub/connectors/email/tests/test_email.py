"""The email connector against real Dovecot (IMAP) and Postfix (SMTP) servers on 127.0.0.1.

The servers come from scripts/ensure-mail (run once per session by the `mail_server` fixture);
every test starts from empty mailboxes.
"""

from __future__ import annotations

import datetime as dt
import json
import uuid
from email.message import EmailMessage
from email.utils import format_datetime, make_msgid

import pytest

from hubbub.connectors.base import MalformedEvent, PermanentError, Reply, TransientError
from hubbub.connectors.email import html_to_text, parse_message, strip_quoted
from hubbub.connectors.email.connector import reply_message_id

from .conftest import BRAND, CUSTOMER, MailServer, parse

pytestmark = pytest.mark.mail


def customer_mail(subject: str = "Where is my parcel?", body: str = "It has been two weeks.", **headers: str):
    message = EmailMessage()
    message["From"] = f"Alice Customer <{CUSTOMER}>"
    message["To"] = f"Brand <{BRAND}>"
    message["Subject"] = subject
    message["Date"] = format_datetime(dt.datetime(2025, 11, 20, 9, 30, tzinfo=dt.UTC))
    message["Message-ID"] = make_msgid(domain="customer.hubbub.test")
    for name, value in headers.items():
        message[name.replace("_", "-")] = value
    message.set_content(body)
    return message


def deliver(mail: MailServer, **kwargs) -> str:
    """Send a customer's mail through Postfix and wait until Dovecot has it; its bare Message-ID."""
    message = customer_mail(**kwargs)
    mail.send(message)
    message_id = message["Message-ID"].strip("<>")
    assert mail.wait_for(message_id), f"{message_id} was not delivered"
    return message_id


def ids(result) -> list[str]:
    return [post.external_id for post in result.posts]


def raw_mail(body: bytes, headers: bytes = b"") -> bytes:
    head = (
        b"From: Mallory <mallory@hubbub.test>\r\nTo: brand@hubbub.test\r\n"
        + f"Message-ID: <{uuid.uuid4().hex}@hostile.test>\r\n".encode()
        + headers
    )
    return head + b"\r\n" + body


# -- fetch --------------------------------------------------------------------------------------


def test_mail_delivered_through_postfix_is_fetched_over_imap(mail: MailServer) -> None:
    message_id = deliver(mail, subject="Broken kettle", body="My kettle broke after a week.\n\nAlice")
    connector = mail.connector()

    result = connector.fetch({})

    assert ids(result) == [message_id]
    assert result.more is False
    payload = result.posts[0].payload
    assert json.loads(json.dumps(payload)) == payload  # stored as JSON by the worker
    assert payload["from"] == [["Alice Customer", CUSTOMER]]
    assert payload["to"] == [["Brand", BRAND]]
    assert payload["subject"] == "Broken kettle"
    assert payload["uid"] == result.cursor["last_uid"]
    assert result.cursor["uidvalidity"] == payload["uidvalidity"]
    assert result.cursor["recent"][-1][0] == message_id

    post = connector.normalize(payload)
    assert post.external_id == message_id
    assert post.author_handle == CUSTOMER
    assert post.author_name == "Alice Customer"
    assert post.text == "Broken kettle\n\nMy kettle broke after a week.\n\nAlice"
    assert post.created_at == dt.datetime(2025, 11, 20, 9, 30, tzinfo=dt.UTC)
    assert post.is_private is True
    assert post.from_brand is False

    # Nothing was marked as read.
    conn = mail.imap()
    conn.select("INBOX", readonly=True)
    _, unseen = conn.uid("SEARCH", "UNSEEN")
    conn.logout()
    assert unseen[0].split() == [str(payload["uid"]).encode()]


def test_cursor_resumes_across_a_restart_without_repeats_or_skips(mail: MailServer) -> None:
    first = [deliver(mail, subject=f"first {n}") for n in range(2)]
    result = mail.connector().fetch({})
    assert ids(result) == first
    cursor = json.loads(json.dumps(result.cursor))  # as the worker stores it

    later = [deliver(mail, subject=f"later {n}") for n in range(3)]
    # A new process with a small fetch limit: pages through the rest, one message at a time.
    connector = mail.connector(fetch_limit=1)
    seen = []
    for _ in range(5):
        result = connector.fetch(cursor)
        cursor = json.loads(json.dumps(result.cursor))
        seen += ids(result)
        if not result.more:
            break
    assert seen == later
    assert mail.connector().fetch(cursor).posts == []


def test_first_fetch_backfills_only_the_newest(mail: MailServer) -> None:
    sent = [deliver(mail, subject=f"old {n}") for n in range(3)]
    result = mail.connector(backfill_limit=2).fetch({})
    assert ids(result) == sent[1:]
    assert mail.connector().fetch(result.cursor).posts == []


def test_uidvalidity_change_is_handled_without_doubles(mail: MailServer) -> None:
    conn = mail.imap()
    conn.create('"Support"')
    for n in range(2):
        mail.append(customer_mail(subject=f"before {n}").as_bytes(), folder="Support")
    connector = mail.connector(mailbox="Support")
    before = connector.fetch({})
    assert len(before.posts) == 2

    # Rebuild the folder: same messages under a new UIDVALIDITY, plus one new message.
    conn.create('"Support-new"')
    conn.select('"Support"')
    conn.uid("COPY", "1:*", '"Support-new"')
    conn.close()
    new = customer_mail(subject="after")
    mail.append(new.as_bytes(), folder="Support-new")
    assert conn.delete('"Support"')[0] == "OK"
    assert conn.rename('"Support-new"', '"Support"')[0] == "OK"
    conn.logout()

    after = connector.fetch(json.loads(json.dumps(before.cursor)))

    assert after.cursor["uidvalidity"] != before.cursor["uidvalidity"]
    assert ids(after) == [new["Message-ID"].strip("<>")]
    again = connector.fetch(after.cursor)
    assert again.posts == []


def test_fetch_limit_sets_more(mail: MailServer) -> None:
    sent = [deliver(mail, subject=f"n{n}") for n in range(3)]
    result = mail.connector(fetch_limit=2).fetch({})
    assert ids(result) == sent[:2]
    assert result.more is True
    rest = mail.connector(fetch_limit=2).fetch(result.cursor)
    assert ids(rest) == sent[2:]
    assert rest.more is False


def test_new_messages_are_found_across_a_gap_of_expunged_uids(mail: MailServer, monkeypatch) -> None:
    monkeypatch.setattr("hubbub.connectors.email.connector.UID_WINDOW", 2)
    cursor = mail.connector().fetch({}).cursor
    for n in range(5):
        mail.append(customer_mail(subject=f"gap {n}").as_bytes())
    conn = mail.imap()
    conn.select("INBOX")
    uids = conn.uid("SEARCH", "ALL")[1][0].split()
    conn.uid("STORE", b",".join(uids[:-1]), "+FLAGS.SILENT", r"(\Deleted)")
    conn.expunge()
    conn.logout()

    result = mail.connector().fetch(cursor)

    assert [post.payload["subject"] for post in result.posts] == ["gap 4"]
    assert result.cursor["last_uid"] == result.posts[0].payload["uid"]


# -- publish ------------------------------------------------------------------------------------


def test_reply_arrives_in_the_customers_mailbox_threaded(mail: MailServer) -> None:
    parent = deliver(mail, subject="Broken kettle", References="<earlier@customer.hubbub.test>")
    connector = mail.connector()
    key = f"reply-{uuid.uuid4().hex}"

    published = connector.publish(
        Reply(
            text="Sorry to hear that. A new kettle is on its way.",
            idempotency_key=key,
            private=True,
            in_reply_to_external_id=parent,
            to_handle=CUSTOMER,
        )
    )

    assert published.external_id == f"{key}@hubbub"
    assert published.payload["already_sent"] is False
    received = mail.wait_for(published.external_id, user=CUSTOMER)
    assert len(received) == 1
    reply = parse(received[0])
    assert reply["Message-ID"] == f"<{key}@hubbub>"
    assert reply["In-Reply-To"] == f"<{parent}>"
    assert reply["References"] == f"<earlier@customer.hubbub.test> <{parent}>"
    assert reply["Subject"] == "Re: Broken kettle"
    assert reply["To"] == CUSTOMER
    assert reply["From"] == f"Brand Support <{BRAND}>"
    assert "A new kettle is on its way." in reply.get_content()
    # A copy is in the brand's Sent folder, and the customer's own copy reads as the brand's.
    assert len(mail.wait_for(published.external_id, user=BRAND, folder="Sent")) == 1
    sent_copy = connector.normalize(parse_message(received[0], received_at="2025-11-22T10:00:00+00:00"))
    assert sent_copy.from_brand is True
    assert sent_copy.in_reply_to_external_id == parent


def test_retry_with_the_same_key_does_not_send_twice(mail: MailServer) -> None:
    parent = deliver(mail)
    reply = Reply(text="On it!", idempotency_key="outbox-42-1", in_reply_to_external_id=parent, to_handle=CUSTOMER)

    first = mail.connector().publish(reply)
    mail.wait_for(first.external_id, user=CUSTOMER)
    second = mail.connector().publish(reply)  # e.g. the worker died before recording the first

    assert second.external_id == first.external_id
    assert second.payload["already_sent"] is True
    # Give a second copy time to arrive (Postfix delivers in well under a second here).
    assert len(mail.wait_for(first.external_id, user=CUSTOMER, count=2, timeout=1.5)) == 1
    assert len(mail.wait_for(first.external_id, user=BRAND, folder="Sent", count=2, timeout=0)) == 1


def test_reply_without_a_known_parent_still_goes_out(mail: MailServer) -> None:
    published = mail.connector().publish(
        Reply(
            text="Hello",
            idempotency_key="k-no-parent",
            in_reply_to_external_id="gone@elsewhere.test",
            to_handle=CUSTOMER,
        )
    )
    reply = parse(mail.wait_for(published.external_id, user=CUSTOMER)[0])
    assert reply["Subject"] == "Re: your message"
    assert reply["In-Reply-To"] == "<gone@elsewhere.test>"


@pytest.mark.parametrize(
    "to_handle",
    ["not-an-address", f"{CUSTOMER}\r\nBcc: evil@hubbub.test", f"{CUSTOMER}, evil@hubbub.test", "a b@hubbub.test", ""],
)
def test_bad_recipients_are_refused_before_sending(mail: MailServer, to_handle: str) -> None:
    with pytest.raises(PermanentError) as caught:
        mail.connector().publish(Reply(text="hi", idempotency_key="k-bad", to_handle=to_handle))
    assert caught.value.affects_account is False


def test_header_injection_through_the_parent_id_is_refused(mail: MailServer) -> None:
    with pytest.raises(PermanentError) as caught:
        mail.connector().publish(
            Reply(text="hi", idempotency_key="k-inj", in_reply_to_external_id="a@b>\r\nBcc: <x@y", to_handle=CUSTOMER)
        )
    assert caught.value.affects_account is False


def test_unknown_recipient_fails_only_this_reply(mail: MailServer) -> None:
    with pytest.raises(PermanentError) as caught:
        mail.connector().publish(Reply(text="hi", idempotency_key="k-550", to_handle="nobody@hubbub.test"))
    assert caught.value.affects_account is False
    assert "550" in str(caught.value)


def test_temporary_smtp_refusal_is_transient(mail: MailServer) -> None:
    with pytest.raises(TransientError, match="450"):
        mail.connector().publish(Reply(text="hi", idempotency_key="k-450", to_handle="tempfail@hubbub.test"))
    # Not recorded as sent: a retry will try again.
    assert mail.wait_for(reply_message_id("k-450"), folder="Sent", timeout=0) == []


# -- errors -------------------------------------------------------------------------------------


def test_wrong_password_is_permanent(mail: MailServer) -> None:
    connector = mail.connector(password="wrong")
    with pytest.raises(PermanentError) as caught:
        connector.fetch({})
    assert caught.value.affects_account is True
    with pytest.raises(PermanentError):
        connector.publish(Reply(text="hi", idempotency_key="k-pw", to_handle=CUSTOMER))


def test_wrong_smtp_password_is_permanent(mail: MailServer) -> None:
    connector = mail.connector(smtp_password="wrong")
    with pytest.raises(PermanentError, match="refused the login") as caught:
        connector.publish(Reply(text="hi", idempotency_key="k-smtp-pw", to_handle=CUSTOMER))
    assert caught.value.affects_account is True


def test_server_down_is_transient(mail: MailServer) -> None:
    with pytest.raises(TransientError):
        mail.connector(imap_port=1).fetch({})
    with pytest.raises(TransientError):
        mail.connector(smtp_port=1).publish(Reply(text="hi", idempotency_key="k-down", to_handle=CUSTOMER))


def test_private_address_refused_without_allow_private(mail: MailServer) -> None:
    for host in ("127.0.0.1", "localhost"):
        connector = mail.connector(allow_private=False, imap_host=host, smtp_host=host)
        with pytest.raises(PermanentError, match="private or internal address"):
            connector.fetch({})
        with pytest.raises(PermanentError, match="private or internal address"):
            connector.publish(Reply(text="hi", idempotency_key="k-private", to_handle=CUSTOMER))


def test_misconfiguration_is_permanent(mail: MailServer) -> None:
    with pytest.raises(PermanentError, match="imap_tls"):
        mail.connector(imap_tls="sometimes").fetch({})
    with pytest.raises(PermanentError, match="from_address"):
        mail.connector(from_address="brand").publish(Reply(text="hi", idempotency_key="k", to_handle=CUSTOMER))
    with pytest.raises(PermanentError, match="Nope"):
        mail.connector(mailbox="Nope").fetch({})


@pytest.mark.parametrize(
    "tls",
    [
        {"imap_tls": "ssl", "smtp_tls": "ssl", "secure_ports": True},
        {"imap_tls": "starttls", "smtp_tls": "starttls", "secure_ports": False},
    ],
    ids=["implicit-tls", "starttls"],
)
@pytest.mark.parametrize("host", ["127.0.0.1", "localhost"])
def test_tls_with_a_verified_certificate(mail: MailServer, tls: dict, host: str) -> None:
    parent = deliver(mail)
    secure = tls["secure_ports"]
    connector = mail.connector(
        imap_host=host,
        smtp_host=host,
        imap_tls=tls["imap_tls"],
        smtp_tls=tls["smtp_tls"],
        imap_port=mail.imaps_port if secure else mail.imap_port,
        smtp_port=mail.smtps_port if secure else mail.smtp_port,
        tls_ca=mail.certificate,
    )
    assert ids(connector.fetch({})) == [parent]
    published = connector.publish(
        Reply(
            text="Over TLS",
            idempotency_key=f"k-tls-{uuid.uuid4().hex}",
            in_reply_to_external_id=parent,
            to_handle=CUSTOMER,
        )
    )
    assert mail.wait_for(published.external_id, user=CUSTOMER)


def test_untrusted_certificate_is_permanent(mail: MailServer) -> None:
    # Without tls_ca the self-signed certificate is not trusted: a configuration problem.
    with pytest.raises(PermanentError, match="certificate"):
        mail.connector(imap_tls="ssl", imap_port=mail.imaps_port).fetch({})
    with pytest.raises(PermanentError, match="certificate"):
        mail.connector(imap_tls="starttls").fetch({})
    with pytest.raises(PermanentError, match="certificate"):
        mail.connector(smtp_tls="starttls", tls_ca="").publish(
            Reply(text="hi", idempotency_key="k-untrusted", to_handle=CUSTOMER)
        )
    with pytest.raises(PermanentError, match="tls_ca"):
        mail.connector(imap_tls="ssl", tls_ca="not a certificate").fetch({})


# -- hostile and malformed messages -------------------------------------------------------------


def fetch_one(mail: MailServer, raw: bytes) -> dict:
    mail.append(raw)
    result = mail.connector().fetch({})
    assert len(result.posts) == 1
    payload = result.posts[0].payload
    assert json.loads(json.dumps(payload)) == payload
    return payload


def test_message_without_date_uses_the_received_time(mail: MailServer) -> None:
    payload = fetch_one(mail, raw_mail(b"no date here\r\n", b"Subject: undated\r\n"))
    assert payload["date_iso"] is None
    assert "no Date header" in payload["problems"]
    post = mail.connector().normalize(payload)
    assert abs(post.created_at - dt.datetime.now(dt.UTC)) < dt.timedelta(minutes=5)


def test_bad_charset_is_decoded_with_replacements(mail: MailServer) -> None:
    payload = fetch_one(
        mail,
        raw_mail(
            b"caf\xe9 \xff\xfe broken\r\n",
            b"Subject: =?x-klingon?q?hello?=\r\nContent-Type: text/plain; charset=x-klingon\r\n"
            b"Date: Thu, 20 Nov 2025 09:30:00 +0000\r\n",
        ),
    )
    assert payload["text"].startswith("caf\ufffd")
    assert "broken" in payload["text"]
    assert any("LookupError" in problem for problem in payload["problems"])
    assert mail.connector().normalize(payload).text.endswith("broken")


def nested_multipart(levels: int) -> bytes:
    body = b""
    for level in range(levels):
        body += b'Content-Type: multipart/mixed; boundary="b%d"\r\n\r\n--b%d\r\n' % (level, level)
    body += b"Content-Type: text/plain\r\n\r\ndeep inside\r\n"
    for level in reversed(range(levels)):
        body += b"--b%d--\r\n" % level
    return body


def test_deeply_nested_multipart_is_cut_off(mail: MailServer) -> None:
    raw = raw_mail(b"", b"Subject: matryoshka\r\nMIME-Version: 1.0\r\n")[:-2] + nested_multipart(50)
    payload = fetch_one(mail, raw)
    assert payload["text"] == ""
    assert any("nested deeper" in problem for problem in payload["problems"])
    assert mail.connector().normalize(payload).text == "matryoshka"
    # Thousands of levels are not even parsed.
    bomb = parse_message(raw_mail(b"", b"Subject: bomb\r\nMIME-Version: 1.0\r\n")[:-2] + nested_multipart(3000))
    assert bomb["subject"] == "bomb"
    assert any("headers only" in problem for problem in bomb["problems"])


def test_huge_part_is_capped_and_attachments_are_only_listed(mail: MailServer) -> None:
    message = customer_mail(subject="big", body="x" * (5 * 1024 * 1024))
    message.add_attachment(b"\0" * 300_000, maintype="application", subtype="octet-stream", filename="dump.bin")
    mail.send(message)
    mail.wait_for(message["Message-ID"].strip("<>"))
    result = mail.connector().fetch({})
    payload = result.posts[0].payload
    assert len(payload["text"]) == 200_000
    assert any("text cut" in problem for problem in payload["problems"])
    assert payload["attachments"] == [
        {"filename": "dump.bin", "content_type": "application/octet-stream", "size": 300_000}
    ]
    assert payload["size"] > 5 * 1024 * 1024
    assert len(json.dumps(payload)) < 300_000


def test_header_injection_attempts_stay_inside_their_header(mail: MailServer) -> None:
    payload = fetch_one(
        mail,
        raw_mail(
            b"hi\r\n",
            b"Subject: =?utf-8?q?refund=0D=0ABcc:_evil@hubbub.test?=\r\n"
            b'In-Reply-To: <ok@x.test>\r\nReferences: <a@x.test>\r\n <b"@x.test>\r\n'
            b"Date: Thu, 20 Nov 2025 09:30:00 +0000\r\n",
        ),
    )
    assert payload["subject"] == "refund Bcc: evil@hubbub.test"
    assert "\n" not in payload["subject"] and "\r" not in payload["subject"]
    assert payload["in_reply_to"] == "ok@x.test"
    assert payload["references"] == ["a@x.test"]


def test_message_without_message_id_gets_a_stable_synthetic_id(mail: MailServer) -> None:
    raw = b"From: bob@hubbub.test\r\nSubject: anon\r\nDate: Thu, 20 Nov 2025 09:30:00 +0000\r\n\r\nhello\r\n"
    payload = fetch_one(mail, raw)
    assert payload["message_id_synthetic"] is True
    assert payload["message_id"].endswith("@hubbub.invalid")
    assert payload["message_id"] == parse_message(raw)["message_id"]


def test_message_without_sender_is_malformed(mail: MailServer) -> None:
    payload = fetch_one(mail, b"Subject: who?\r\nMessage-ID: <nosender@x.test>\r\n\r\nhello\r\n")
    assert "no usable From address" in payload["problems"]
    with pytest.raises(MalformedEvent, match="no sender"):
        mail.connector().normalize(payload)


@pytest.mark.parametrize(
    "payload",
    [
        "not a dict",
        {},
        {"message_id": "a@b", "from": []},
        {"message_id": "a@b", "from": [["x", "no-at-sign"]]},
        {"message_id": "a@b", "from": [["x", "a@b"]], "text": 5},
        {"message_id": "a@b", "from": [["x", "a@b"]], "text": "hi", "date_iso": None, "received_at": None},
    ],
)
def test_normalize_rejects_malformed_payloads(mail: MailServer, payload) -> None:
    with pytest.raises(MalformedEvent):
        mail.connector().normalize(payload)


# -- text ---------------------------------------------------------------------------------------


def test_html_only_mail_is_read_as_text(mail: MailServer) -> None:
    message = customer_mail(subject="html")
    message.set_content("<p>Hello&nbsp;there</p><script>alert(1)</script><div>line two<br>three</div>", subtype="html")
    mail.send(message)
    mail.wait_for(message["Message-ID"].strip("<>"))
    payload = mail.connector().fetch({}).posts[0].payload
    assert payload["text"] == "Hello there\n\nline two\nthree"
    assert "<script>" in payload["html"]  # kept raw; the inbox sanitises it
    assert html_to_text("<p>a</p><p>b</p>") == "a\n\nb"


def test_quoted_history_is_left_out() -> None:
    text = (
        "Still broken, see below.\n\n"
        "On Thu, 20 Nov 2025 at 09:30, Brand Support <brand@hubbub.test>\nwrote:\n"
        "> Have you tried turning it off?\n"
    )
    assert strip_quoted(text) == "Still broken, see below."
    assert strip_quoted("ok\n> quoted\nmore\n-----Original Message-----\nFrom: x") == "ok\nmore"
    assert strip_quoted("On Monday my son wrote:\nthe app is broken") == "On Monday my son wrote:\nthe app is broken"
    assert strip_quoted("> only quoted") == "> only quoted"
