"""Demo data that hubbub makes itself: three brands, their teams, and a morning of posts.

Posts are stored as raw events in each network's own wire format and go through the same
pipeline as real traffic, so the demo shows what hubbub really does with them.
"""

from __future__ import annotations

import datetime as dt
import email.utils
import html
import random
import threading
import time
import zlib
from dataclasses import dataclass

from django.contrib.auth.models import User
from django.db import transaction
from django.utils import timezone

from hubbub.accounts.actions import do_add_member, do_create_organization
from hubbub.accounts.models import Availability, Membership, Organization, Role
from hubbub.connectors.actions import do_store_events
from hubbub.connectors.base import RawPost
from hubbub.connectors.models import Network, SocialAccount
from hubbub.inbox.actions import do_import_tiers
from hubbub.inbox.models import Tier
from hubbub.lib.tierlist import TierRow
from hubbub.playbook.actions import do_publish_default_playbook

DEMO_PASSWORD = "hubbub-demo"  # noqa: S105 - printed by `make run` for the demo logins
# username, role, departments (None: all)
DEMO_USERS = [
    ("admin", Role.ADMIN, None),
    ("supervisor", Role.SUPERVISOR, ["customer-service", "sales", "marketing", "legal", "operations"]),
    ("agent", Role.AGENT, ["customer-service"]),
    ("sales", Role.AGENT, ["sales", "marketing"]),
]


@dataclass(frozen=True)
class Brand:
    name: str
    slug: str
    handle: str
    topics: dict[str, list[str]]


BRANDS = [
    Brand(
        "Northwind Air",
        "northwind-air",
        "northwindair",
        {
            "complaint": [
                "@northwindair flight NW412 delayed 3 hours and nobody at the gate will tell us anything. Terrible.",
                "@northwindair you lost my bag on the way to Lisbon and the claim line hangs up on me. Still waiting.",
                "@northwindair charged me twice for seat selection. I want a refund, not another survey.",
                "@northwindair cancelled my flight with 2 hours notice and the rebooking page is broken. Worst "
                "airline.",
                "@northwindair the app logged me out at check-in and now I'm stuck in the queue. Fix this please",
            ],
            "question": [
                "@northwindair can I bring a folding bike as checked luggage on domestic flights?",
                "@northwindair how do I add my frequent flyer number to a booking made by my company?",
                "@northwindair is there wifi on the Lisbon route? Need to work during the flight",
            ],
            "praise": [
                "Huge thanks to the @northwindair crew on NW88 who found my daughter's teddy bear. You made her week!",
                "@northwindair smoothest boarding I've had all year, great job at gate B12 👏",
            ],
            "sales_lead": [
                "@northwindair we're a team of 40 flying to Porto in March. Do you do group fares? Who do I talk to?",
                "@northwindair how much is the upgrade to business on NW300 tomorrow? Interested if it's under 200",
            ],
            "legal_threat": [
                "@northwindair 3 weeks and still no compensation for the cancelled flight. My lawyer will be in touch "
                "and I'm filing with the aviation regulator.",
            ],
            "private_data": [
                "@northwindair my booking reference is QX7TR2 and my card 4111 1111 1111 1111 was charged twice, "
                "please sort it out",
            ],
            "hr": [
                "@northwindair the agent at the Gatwick desk was incredibly rude to my elderly mum. Your staff need "
                "training.",
            ],
            "feature_request": [
                "@northwindair please add a way to pick seats in the app, it would be great for families",
            ],
            # Too vague to route on its own: these wait in the triage queue for a person.
            "unsure": ["@northwindair hmm. ok then", "@northwindair so... what now"],
        },
    ),
    Brand(
        "Volt Mobile",
        "volt-mobile",
        "voltmobile",
        {
            "complaint": [
                "@voltmobile no signal in the whole of Leeds city centre since this morning. Is there an outage?",
                "@voltmobile my bill doubled this month and I didn't change anything. Ridiculous.",
                "@voltmobile third time this week my data stops working after 6pm. Paying for nothing.",
                "@voltmobile been on hold for 50 minutes. Nobody answers. Awful service.",
            ],
            "question": [
                "@voltmobile does the unlimited plan include roaming in Spain?",
                "@voltmobile how can I get a PAC code to switch my number?",
                "@voltmobile is eSIM supported on the Pixel 9?",
            ],
            "praise": [
                "@voltmobile the new 5G in Manchester is seriously fast, well done 🚀",
                "Shoutout to Priya at @voltmobile support who sorted my contract in 5 minutes. Brilliant.",
            ],
            "sales_lead": [
                "@voltmobile I'd like to move our small business (12 lines) to you. Can someone send me a quote?",
            ],
            "legal_threat": [
                "@voltmobile you keep charging me after I cancelled. Taking this to the ombudsman and small claims "
                "court.",
            ],
            "private_data": [
                "@voltmobile account number 88231907 - my phone +44 7700 900123 was cut off even though I paid",
            ],
            "hr": [
                "@voltmobile are you hiring in the Bristol store? Where do I send a job application?",
            ],
            "press": [
                "@voltmobile hi, I'm a reporter at the Leeds Post writing a story about the outage. Request for "
                "comment?",
            ],
            "unsure": ["@voltmobile well that was something"],
        },
    ),
    Brand(
        "Brightbank",
        "brightbank",
        "brightbank",
        {
            "complaint": [
                "@brightbank app has been down all morning and I can't pay my rent. Not good enough.",
                "@brightbank you blocked my card abroad AGAIN even though I told you I'm travelling. Useless.",
                "@brightbank my transfer has been pending for 4 days. Where is my money?",
            ],
            "question": [
                "@brightbank how do I change the address on my account?",
                "@brightbank can I open a joint account in the app or do I need to go to a branch?",
            ],
            "praise": [
                "@brightbank the new savings pots are great, finally a bank app that makes sense",
            ],
            "sales_lead": [
                "@brightbank interested in a mortgage in principle - what's the rate for a first time buyer?",
            ],
            "legal_threat": [
                "@brightbank this is fraud. I'm reporting you to the financial ombudsman and speaking to a solicitor.",
            ],
            "feature_request": ["@brightbank would love to see a dark mode in the app!"],
            "unsure": ["@brightbank right."],
            "private_data": [
                "@brightbank my account number is 12345678 sort code 20-00-00 and email jo.bloggs@example.com, "
                "why was my payment declined?",
            ],
        },
    ),
]

CUSTOMERS = [
    ("maria_lopes", "Maria Lopes", 312),
    ("dev_ahmed", "Dev Ahmed", 1840),
    ("sam.k", "Sam K", 95),
    ("techreviewer", "Tech Reviewer", 48200),
    ("jo_bloggs", "Jo Bloggs", 27),
    ("l.nguyen", "Linh Nguyen", 611),
    ("petra_v", "Petra V", 2230),
    ("oscar", "Oscar Ruiz", 150),
    ("travelwithtom", "Travel with Tom", 15400),
    ("ada", "Ada", 73),
    ("mike_t", "Mike T", 402),
    ("hannah.b", "Hannah B", 980),
    ("raj_p", "Raj Patel", 530),
    ("chloe.m", "Chloe Martin", 88),
    ("kofi", "Kofi Mensah", 1200),
    ("elena_r", "Elena Rossi", 260),
    ("ben_w", "Ben Walker", 12),
    ("yuki.t", "Yuki Tanaka", 3400),
    ("fatima_z", "Fatima Z", 720),
    ("george_h", "George H", 45),
    ("ines.c", "Inês Costa", 390),
    ("noah", "Noah Fischer", 205),
]

# Each brand's VIP list, loaded before any post: the starter playbook's VIP rule and the priority
# score pick these customers out from their first post.
VIPS = ["yuki.t"]

# Replies the brand already sent: public, and private (when account details are involved).
BRAND_REPLIES = {
    False: [
        "Sorry to hear this. We're looking into it now and will come back to you here.",
        "Thanks for flagging - can you tell us which town you're in?",
    ],
    True: [
        "Please don't share account or card details publicly - we've sent you a direct message to sort this out.",
    ],
}

FOLLOW_UPS = [
    "Still nothing. Hello??",
    "Sent you a DM with the details.",
    "Any update on this?",
]


DEMO_PORT = 8765


def demo_urls() -> dict[str, str]:
    """Where each demo brand's local Mastodon instance listens (`hubbub run --demo` starts them)."""
    return {brand.handle: f"http://127.0.0.1:{DEMO_PORT + n}" for n, brand in enumerate(BRANDS)}


def demo_token(handle: str) -> str:
    return f"demo-token-{handle}"


@transaction.atomic
def load_demo(seed: int = 7) -> list[Organization]:
    """Create the demo brands, users and posts. Loading twice changes nothing."""
    rng = random.Random(seed)
    users = {name: _user(name) for name, _, _ in DEMO_USERS}
    urls = demo_urls()
    organizations = []
    for brand in BRANDS:
        org = Organization.objects.filter(slug=brand.slug).first()
        if org is None:
            org = do_create_organization(brand.name, brand.slug)
            do_publish_default_playbook(org)
            vips = [TierRow(line, Network.MASTODON, handle, Tier.VIP) for line, handle in enumerate(VIPS, 1)]
            do_import_tiers(org, vips, source="demo")
        for name, role, departments in DEMO_USERS:
            membership = do_add_member(org, users[name], role, departments)
            # The demo team is at work: "Next case" hands out cases at once.
            Membership.objects.filter(pk=membership.pk).update(availability=Availability.ONLINE)
        account, created = SocialAccount.objects.get_or_create(
            organization=org,
            network=Network.MASTODON,
            handle=brand.handle,
            defaults={"base_url": urls[brand.handle], "poll_interval_seconds": 5},
        )
        if created:
            account.credentials = {"access_token": demo_token(brand.handle)}
            account.save(update_fields=["credentials_encrypted"])
            do_store_events(account, _statuses(brand, rng))
        organizations.append(org)
    return organizations


# A travel forum's RSS feed where Northwind Air's customers talk without tagging the brand.
FORUM_POSTS = [
    (
        "Northwind lost my bag twice this year",
        "Anyone else had luggage go missing with Northwind Air? Second "
        "time this year and their claim form keeps timing out.",
        "Frequent Flyer Fran",
        "post",
    ),
    (
        "Re: Best airline for Lisbon?",
        "Northwind's Lisbon route was on time both ways and the crew were lovely.",
        "Tiago",
        "comment",
    ),
    (
        "Northwind Air refund taking forever",
        "Cancelled flight in October, still no refund. I'm going to the "
        "small claims court next week if nothing happens.",
        "annoyed_in_leeds",
        "post",
    ),
    (
        "Pingback: Airline refunds tracker",
        "[...] Northwind Air has the slowest refunds of the five airlines we tracked [...]",
        "Consumer Travel Blog",
        "pingback",
    ),
]


def forum_feed(now: dt.datetime) -> str:
    """The forum's RSS 2.0 feed, as a WordPress-style forum would serve it."""
    items = []
    for number, (title, text, author, kind) in enumerate(FORUM_POSTS):
        when = email.utils.format_datetime(now - dt.timedelta(hours=4 - number))
        category = f"<category>{kind}</category>" if kind == "pingback" else ""
        items.append(
            f"<item><title>{html.escape(title)}</title>"
            f"<link>https://travel-forum.example/t/{number + 1}</link>"
            f"<guid isPermaLink='false'>travel-forum-{number + 1}</guid>"
            f"<dc:creator>{html.escape(author)}</dc:creator><pubDate>{when}</pubDate>{category}"
            f"<description>{html.escape(text)}</description></item>"
        )
    return (
        '<?xml version="1.0" encoding="UTF-8"?>'
        '<rss version="2.0" xmlns:dc="http://purl.org/dc/elements/1.1/"><channel>'
        "<title>Travel forum: airlines</title><link>https://travel-forum.example/</link>"
        "<description>Where travellers compare airlines</description>" + "".join(items) + "</channel></rss>"
    )


def start_instances() -> list:
    """Start one local Mastodon-format instance per demo brand, holding the posts the demo stored."""
    from hubbub.testing.fake_mastodon import FakeMastodon

    instances = []
    for brand in BRANDS:
        port = int(demo_urls()[brand.handle].rsplit(":", 1)[1])
        instance = FakeMastodon(access_token=demo_token(brand.handle), brand=brand.handle, port=port).start()
        account = SocialAccount.objects.filter(network=Network.MASTODON, handle=brand.handle).first()
        if account is not None:
            # The instance forgets everything when it stops: give it back the statuses hubbub has seen,
            # so replies to them find their parent.
            instance.restore(account.events.order_by("id").values_list("payload", flat=True))
        instances.append(instance)
    return instances


def start_forum(organization: Organization):
    """Serve the demo forum feed locally and make sure Northwind Air listens to it."""
    from hubbub.testing.fake_feeds import FakeFeedServer

    forum = FakeFeedServer(port=DEMO_PORT + len(BRANDS)).start()
    forum.set_feed("/airlines.rss", forum_feed(timezone.now().replace(minute=0, second=0, microsecond=0)))
    SocialAccount.objects.update_or_create(
        organization=organization,
        network=Network.RSS,
        handle="travel-forum",
        defaults={"settings": {"feed_urls": [forum.url_for("/airlines.rss")]}, "poll_interval_seconds": 30},
    )
    return forum


def start_live_customers(instances: list, every_seconds: float = 45.0) -> threading.Thread:
    """Now and then a customer posts to one of the demo brands, so new cases arrive while you watch."""
    rng = random.Random()

    def post_now_and_then() -> None:
        while True:
            time.sleep(every_seconds)
            number = rng.randrange(len(instances))
            brand = BRANDS[number]
            kind = rng.choice(list(brand.topics))
            handle, name, followers = rng.choice(CUSTOMERS)
            instances[number].add_mention(
                rng.choice(brand.topics[kind]), acct=handle, display_name=name, followers_count=followers
            )

    thread = threading.Thread(target=post_now_and_then, name="demo-customers", daemon=True)
    thread.start()
    return thread


def _user(username: str) -> User:
    user, created = User.objects.get_or_create(username=username, defaults={"is_staff": username == "admin"})
    if created:
        user.set_password(DEMO_PASSWORD)
        user.is_superuser = username == "admin"
        user.save()
    return user


def _statuses(brand: Brand, rng: random.Random) -> list[RawPost]:
    """A morning of mentions in Mastodon's Status format, with the brand's replies and customers' follow-ups."""
    now = timezone.now().replace(microsecond=0)
    posts: list[tuple[dt.datetime, RawPost]] = []
    texts = [(kind, text) for kind, items in brand.topics.items() for text in items]
    rng.shuffle(texts)
    start = now - dt.timedelta(hours=5)
    step = dt.timedelta(hours=5) / (len(texts) + 1)

    def post(when, author, text, number, **fields) -> str:
        handle, name, followers = author
        status_id = snowflake(when, number)
        posts.append(
            (when, RawPost(status_id, mastodon_status(status_id, handle, name, followers, text, when, brand, **fields)))
        )
        return status_id

    brand_author = (brand.handle, f"{brand.name} Support", 25_000)
    # Each post from a different customer, so the demo shows one conversation per case.
    customers = rng.sample(CUSTOMERS, len(CUSTOMERS))
    for number, (kind, text) in enumerate(texts):
        customer = customers[number % len(customers)]
        when = start + step * (number + 1)
        parent = post(when, customer, text, number)
        last = parent
        if kind == "private_data" or (kind in ("question", "complaint") and rng.random() < 0.4):
            # The brand answered already; private data is always taken to a direct message.
            private = kind == "private_data"
            when += dt.timedelta(minutes=rng.randint(3, 25))
            last = post(
                when,
                brand_author,
                f"@{customer[0]} {rng.choice(BRAND_REPLIES[private])}",
                number,
                in_reply_to=parent,
                visibility="direct" if private else "public",
            )
        if rng.random() < 0.35:
            when += dt.timedelta(minutes=rng.randint(5, 40))
            post(
                when,
                customer,
                f"@{brand.handle} {rng.choice(FOLLOW_UPS)}",
                number,
                in_reply_to=last,
                visibility="direct" if rng.random() < 0.5 else "public",
            )
    posts.sort(key=lambda pair: pair[0])
    return [raw for _, raw in posts]


def snowflake(when: dt.datetime, sequence: int) -> str:
    # Mastodon ids are milliseconds << 16 plus a sequence: later posts have larger ids.
    return str((int(when.timestamp() * 1000) << 16) + sequence)


def mastodon_status(
    status_id: str,
    handle: str,
    name: str,
    followers: int,
    text: str,
    when: dt.datetime,
    brand: Brand,
    in_reply_to: str | None = None,
    visibility: str = "public",
) -> dict:
    """A status as Mastodon's REST API returns it (the fields hubbub reads, and a few more)."""
    account_id = str(zlib.crc32(handle.encode()))
    return {
        "id": status_id,
        "created_at": when.isoformat().replace("+00:00", "Z"),
        "in_reply_to_id": in_reply_to,
        "in_reply_to_account_id": None,
        "sensitive": False,
        "spoiler_text": "",
        "visibility": visibility,
        "language": "en",
        "uri": f"https://social.example/users/{handle}/statuses/{status_id}",
        "url": f"https://social.example/@{handle}/{status_id}",
        "replies_count": 0,
        "reblogs_count": 0,
        "favourites_count": 0,
        "content": f"<p>{html.escape(text)}</p>",
        "reblog": None,
        "account": {
            "id": account_id,
            "username": handle,
            "acct": handle,
            "display_name": name,
            "followers_count": followers,
            "following_count": 100,
            "statuses_count": 1000,
            "url": f"https://social.example/@{handle}",
            "bot": False,
        },
        "media_attachments": [],
        "mentions": [{"id": "1", "username": brand.handle, "acct": brand.handle, "url": ""}],
        "tags": [],
        "emojis": [],
    }
