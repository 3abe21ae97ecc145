"""Offline default "understanding" of a customer's post: intent, sentiment, language, private data.

Pure Python, lexicon + rules, no network and nothing downloaded. Everything is compiled at import;
a post is cut to MAX_TEXT characters, tokenised once with one regex, and then scored with dict and
set lookups, so classify() handles tens of thousands of tweets a second on one core.

Sentiment follows the ideas popularised by rule-based tools such as VADER (lexicon valences,
negation, boosters, capitals, exclamation marks, "but" clauses), with a lexicon written for hubbub
(lexicon/sentiment.txt). Intent is a weighted sum of cue words and phrases plus the sentiment;
the confidence reflects how strong and how unambiguous the cues are, so posts without cues get a
low confidence and go to human triage.

Run a throughput check by hand:  python -m hubbub.lib.classify --bench [file.csv]
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from pathlib import Path

__all__ = [
    "INTENTS",
    "LABELS",
    "MAX_TEXT",
    "PRIVATE_KINDS",
    "Classification",
    "classify",
    "detect_language",
    "find_private_data",
]

MAX_TEXT = 2000  # text is cut to this many characters before any regex or lexicon pass

INTENTS = ("complaint", "question", "praise", "sales_lead", "legal_threat", "other")
# The taxonomy shown on a case: several can hold at once. The first five are also routing
# intents (one of them, or "other", is the post's main intent, which playbooks match on).
LABELS = (
    "complaint",
    "question",
    "praise",
    "sales_lead",
    "legal_threat",
    "feature_request",
    "outage",
    "employee",
    "press",
    "spam",
)
PRIVATE_KINDS = ("email", "phone", "card_number", "account_number", "order_number", "street_address")


@dataclass(frozen=True)
class Classification:
    intent: str  # one of INTENTS
    intent_confidence: float  # 0..1
    sentiment: str  # "negative" | "neutral" | "positive"
    sentiment_score: float  # -1..1 (intensity)
    sentiment_confidence: float  # 0..1
    language: str  # ISO 639-1 ("en", "es", ...) or "und"
    language_confidence: float
    private_data: tuple[str, ...]  # kinds found, in PRIVATE_KINDS order
    # Every label of LABELS that holds, with its confidence, most confident first; the main
    # intent is among them unless it is "other".
    labels: tuple[tuple[str, float], ...] = ()


# --------------------------------------------------------------------------------------------
# Lexicon
# --------------------------------------------------------------------------------------------

_LEXICON_DIR = Path(__file__).resolve().parent / "lexicon"


def _load_lexicon(path: Path) -> dict[str, float]:
    lexicon: dict[str, float] = {}
    with path.open(encoding="utf-8") as fh:
        for line in fh:
            line = line.rstrip("\n")
            if not line or line.startswith("# ") or line == "#" or "\t" not in line:
                continue
            word, _, score = line.partition("\t")
            value = float(score)
            if value:
                lexicon[word.strip().lower()] = value
    return lexicon


LEXICON: dict[str, float] = _load_lexicon(_LEXICON_DIR / "sentiment.txt")

# Multi-word expressions whose valence replaces that of their parts (scored at the first word).
_PHRASE_VALENCE: dict[str, float] = {
    "thanks for nothing": -2.4,
    "thank you for nothing": -2.4,
    "can't wait": 1.8,
    "cant wait": 1.8,
    "cannot wait": 1.8,
    "no problem": 1.0,
    "no problems": 1.0,
    "no worries": 1.0,
    "not a problem": 1.0,
    "never again": -2.0,
    "waste of time": -2.4,
    "waste of money": -2.6,
    "rip off": -2.6,
    "ripped off": -2.8,
    "let down": -2.1,
    "fed up": -2.3,
    "sick of": -2.3,
    "sick and tired": -2.6,
    "over it": -1.2,
    "the best": 3.1,
    "well done": 2.4,
    "good job": 2.6,
    "great job": 2.9,
    "top notch": 2.7,
    "second to none": 2.8,
    "above and beyond": 2.8,
    "shout out": 1.8,
    "shoutout": 1.8,
    "not happy": -2.2,
    "not impressed": -2.1,
    "not working": -1.8,
    "doesn't work": -1.8,
    "does not work": -1.8,
    "don't work": -1.8,
    "stopped working": -2.0,
    "no one": -0.3,
    # problem reports that carry no single negative word
    "charged twice": -2.0,
    "double charged": -2.0,
    "charged me twice": -2.0,
    "no one answers": -1.8,
    "nobody answers": -1.8,
    "no one has": -0.8,
    "no response": -1.5,
    "no reply": -1.5,
    "still waiting": -1.6,
    "still not": -1.0,
    "still no": -1.2,
    "fix this": -1.2,
    "fix it": -0.8,
    "sort it out": -1.2,
    "never arrived": -1.8,
    "never received": -1.8,
    "not received": -1.5,
    "hasn't arrived": -1.5,
    "on hold": -1.0,
    "money back": -1.4,
    "want a refund": -1.5,
    "yet again": -1.4,
    "keeps crashing": -2.0,
    "won't load": -1.6,
    "hung up on me": -2.0,
    "no one cares": -2.0,
    "get it together": -1.5,
}
_PHRASE_FIRST = frozenset(p.split(" ", 1)[0] for p in _PHRASE_VALENCE)

_NEGATORS = frozenset(
    """not no never nothing nobody none neither nor without cannot cant dont doesnt didnt isnt
    wasnt arent werent wont wouldnt couldnt shouldnt havent hasnt hadnt aint nowhere nope
    ni nunca jamais nie nicht kein keine nessuno niente nada nao não geen niet nooit""".split()
)

# Boosters raise the intensity of the next sentiment word (negative values dampen it).
_BOOSTERS: dict[str, float] = {}
for _w in """very so really extremely super totally absolutely incredibly truly completely utterly
    highly hugely seriously insanely ridiculously awfully terribly fucking freaking frigging
    bloody damn deeply especially exceptionally extraordinarily fully greatly immensely
    particularly purely quite remarkably thoroughly tremendously unbelievably too most more
    sooo soo mega uber wildly majorly massively entirely enormously muy tres très sehr molto
    zeer""".split():
    _BOOSTERS[_w] = 0.3
for _w in """barely hardly slightly somewhat kinda sorta little less marginally partly occasionally
    almost nearly rather fairly pretty mildly""".split():
    _BOOSTERS[_w] = -0.3

_BUT_WORDS = frozenset(("but", "however", "though", "although", "pero", "mais", "aber", "ma", "maar", "mas"))
_BREAKS = frozenset(".,;!?")
_N_T = "n't"

# --------------------------------------------------------------------------------------------
# Intent cues: phrase -> weight, per intent. Phrases are lower-case token sequences.
# --------------------------------------------------------------------------------------------

_CUES: dict[str, dict[str, float]] = {
    "complaint": {
        # service failures
        "delayed": 1.4,
        "delay": 1.1,
        "delays": 1.2,
        "late": 0.8,
        "cancelled": 1.3,
        "canceled": 1.3,
        "broken": 1.4,
        "broke": 0.9,
        "damaged": 1.4,
        "faulty": 1.5,
        "defective": 1.5,
        "missing": 1.0,
        "lost": 0.9,
        "outage": 1.4,
        "crashed": 1.2,
        "crashing": 1.2,
        "crashes": 1.1,
        "glitch": 1.0,
        "error": 0.9,
        "bug": 0.7,
        "stuck": 1.0,
        "wrong": 0.9,
        "overcharged": 1.8,
        "refund": 1.4,
        "refunded": 0.8,
        "compensation": 1.3,
        "worst": 1.8,
        "terrible": 1.3,
        "awful": 1.3,
        "horrible": 1.3,
        "useless": 1.5,
        "unacceptable": 1.8,
        "ridiculous": 1.2,
        "pathetic": 1.5,
        "disgraceful": 1.6,
        "disappointed": 1.4,
        "disappointing": 1.4,
        "incompetent": 1.6,
        "rude": 1.3,
        "scam": 1.5,
        "ripoff": 1.5,
        "complaint": 1.4,
        "complain": 1.2,
        "frustrated": 1.2,
        "frustrating": 1.2,
        "annoyed": 1.0,
        "sucks": 1.0,
        "joke": 0.6,
        "shambles": 1.5,
        "nightmare": 1.3,
        "unhelpful": 1.4,
        "ignored": 1.2,
        "ignoring": 1.2,
        "unresolved": 1.3,
        "escalate": 1.0,
        "yet": 0.5,
        "again": 0.4,
        "still": 0.6,
        "why": 0.5,
        "hours": 0.3,
        "days": 0.3,
        "weeks": 0.4,
        "months": 0.4,
        "fix": 0.7,
        "disconnected": 1.0,
        "unable": 0.8,
        "smh": 0.8,
        "wtf": 0.8,
        "ugh": 0.6,
        "ffs": 1.0,
        "fml": 0.8,
        "cancel": 0.6,
        "charged": 0.6,
        "sort": 0.3,
        "cold": 0.3,
        "dirty": 0.9,
        # phrases
        "still waiting": 1.8,
        "been waiting": 1.6,
        "still not": 1.3,
        "still no": 1.3,
        "still hasn't": 1.5,
        "still haven't": 1.5,
        "charged twice": 2.2,
        "double charged": 2.2,
        "no one answers": 2.0,
        "nobody answers": 2.0,
        "no one has": 1.0,
        "nobody has": 1.0,
        "no response": 1.6,
        "no reply": 1.6,
        "no answer": 1.4,
        "never again": 2.0,
        "fix this": 1.8,
        "fix it": 1.3,
        "sort it out": 1.6,
        "sort this out": 1.6,
        "terrible service": 2.2,
        "poor service": 2.0,
        "bad service": 2.0,
        "customer service": 0.5,
        "not working": 1.6,
        "doesn't work": 1.6,
        "does not work": 1.6,
        "don't work": 1.4,
        "isn't working": 1.6,
        "stopped working": 1.8,
        "won't let me": 1.3,
        "can't log": 1.3,
        "cannot log": 1.3,
        "can't get": 0.6,
        "never received": 1.8,
        "never arrived": 1.8,
        "hasn't arrived": 1.6,
        "didn't arrive": 1.6,
        "not arrived": 1.6,
        "not received": 1.6,
        "haven't received": 1.6,
        "where is my": 1.3,
        "money back": 1.6,
        "my money": 0.8,
        "on hold": 1.2,
        "hold for": 0.8,
        "thanks for nothing": 2.4,
        "not happy": 1.6,
        "not impressed": 1.6,
        "fed up": 1.6,
        "sick of": 1.4,
        "let down": 1.3,
        "lost my": 1.2,
        "rip off": 1.6,
        "ripped off": 1.8,
        "waste of": 1.3,
        "what a joke": 1.6,
        "not good enough": 1.8,
        "no signal": 1.3,
        "no service": 1.3,
        "no internet": 1.4,
        "no wifi": 1.2,
        "keeps crashing": 1.6,
        "keeps dropping": 1.6,
        "cut off": 1.0,
        "hung up": 1.3,
        "wrong order": 1.5,
        "wrong item": 1.5,
        "want a refund": 1.6,
        "false advertising": 1.8,
        "been charged": 1.2,
        "was charged": 1.0,
        "got charged": 1.0,
        # more failure reports written the way customers write them
        "keeps": 0.7,
        "keep getting": 1.2,
        "every time": 0.8,
        "third time": 1.2,
        "second time": 0.9,
        "yet again": 1.4,
        "again and again": 1.4,
        "won't load": 1.5,
        "not loading": 1.5,
        "doesn't load": 1.5,
        "can't access": 1.4,
        "cannot access": 1.4,
        "can't even": 1.0,
        "still can't": 1.5,
        "still doesn't": 1.5,
        "still isn't": 1.5,
        "still down": 1.6,
        "is down": 1.2,
        "are down": 1.2,
        "went down": 1.1,
        "no longer": 1.0,
        "please fix": 1.5,
        "fix your": 1.6,
        "sort your": 1.4,
        "get your act together": 2.0,
        "dropped calls": 1.4,
        "dropping calls": 1.4,
        "my bill": 0.8,
        "charged me": 1.3,
        "took my money": 1.8,
        "paid for": 0.9,
        "paying for": 0.9,
        "i pay": 0.8,
        "we pay": 0.8,
        "how hard is it": 1.8,
        "how is it": 0.6,
        "why is it": 0.8,
        "why can't": 1.3,
        "why won't": 1.3,
        "why does": 0.8,
        "why do you": 1.0,
        "why did": 0.8,
        "why are you": 1.0,
        "why is my": 1.3,
        "why isn't": 1.3,
        "why hasn't": 1.4,
        "why haven't": 1.4,
        "anyone there": 1.0,
        "tried calling": 1.2,
        "tried to call": 1.1,
        "trying to call": 1.0,
        "been trying": 1.2,
        "i've been trying": 1.4,
        "told me": 0.7,
        "was told": 1.0,
        "promised": 1.0,
        "supposed to": 1.0,
        "should have": 0.8,
        "should've": 0.8,
        "even though": 0.6,
        "cancel my": 1.2,
        "cancelling my": 1.3,
        "canceling my": 1.3,
        "switching providers": 1.5,
        "not delivered": 1.6,
        "wasn't delivered": 1.6,
        "never delivered": 1.8,
        "never showed": 1.6,
        "didn't show": 1.3,
        "didn't get": 1.0,
        "haven't got": 1.2,
        "haven't heard": 1.3,
        "never heard back": 1.8,
        "no update": 1.3,
        "no updates": 1.3,
        "no call back": 1.6,
        "no callback": 1.6,
        "hold music": 1.0,
        "minutes on hold": 1.6,
        "hours on hold": 1.8,
        "waited": 1.0,
        "waiting": 0.8,
        "wait time": 0.8,
        "overdue": 1.2,
        "expired": 0.6,
        "lagging": 1.0,
        "freezing": 0.9,
        "frozen": 0.8,
        "locked out": 1.4,
        "logged out": 1.0,
        "declined": 0.8,
        "mistake": 0.8,
        "incorrect": 0.9,
        "wrong address": 1.3,
        "leaking": 1.2,
        "smashed": 1.2,
        "cracked": 1.0,
        "ripped": 1.0,
        "stale": 1.2,
        "mouldy": 1.5,
        "moldy": 1.5,
        "undercooked": 1.4,
        "cold food": 1.4,
        "rude staff": 1.8,
        "staff were rude": 1.8,
        "unreliable": 1.3,
        "slow": 0.7,
        "so slow": 1.2,
        "too slow": 1.2,
        "poor": 0.8,
        "bad": 0.6,
        "fail": 1.0,
        "failed": 0.9,
        "fails": 0.9,
        "failing": 0.9,
        "problem": 0.8,
        "problems": 0.9,
        "issue": 0.6,
        "issues": 0.7,
        "trouble": 0.7,
        "hassle": 0.9,
        "annoying": 0.8,
        "shocking": 1.0,
        "disgusting": 1.0,
        "appalling": 1.3,
        "seriously": 0.6,
        "come on": 0.9,
        "what's going on": 1.0,
        "what is going on": 1.0,
        "what happened to": 0.9,
        "your app": 0.5,
        "your website": 0.5,
        "your site": 0.5,
        "your service": 0.6,
        "your customer": 0.6,
        "your staff": 0.6,
        # a customer telling a brand that something does not happen is usually reporting a problem
        "can't": 0.6,
        "cant": 0.6,
        "cannot": 0.6,
        "won't": 0.6,
        "wont": 0.5,
        "doesn't": 0.6,
        "doesnt": 0.6,
        "didn't": 0.6,
        "didnt": 0.6,
        "isn't": 0.6,
        "isnt": 0.6,
        "wasn't": 0.5,
        "hasn't": 0.8,
        "hasnt": 0.8,
        "haven't": 0.7,
        "havent": 0.7,
        "aren't": 0.5,
        "couldn't": 0.5,
        "don't": 0.3,
        "dont": 0.3,
        "never": 0.6,
        "anymore": 0.8,
        "apparently": 0.5,
        "literally": 0.3,
        "since": 0.4,
        "yesterday": 0.4,
        "minutes": 0.4,
        "ago": 0.3,
        "instead": 0.4,
        "even": 0.3,
        "my order": 0.6,
        "my package": 0.7,
        "my parcel": 0.7,
        "my delivery": 0.7,
        "my flight": 0.5,
        "my bag": 0.6,
        "my luggage": 0.7,
        "my internet": 0.7,
        "my phone": 0.3,
        "my account": 0.3,
        "my card": 0.3,
        "my refund": 1.0,
        "my car": 0.3,
        "my laptop": 0.3,
        "my connection": 0.6,
        "my router": 0.6,
        "my tv": 0.4,
        "my service": 0.6,
        # domain-specific problem reports (delivery, travel, telecom, software, food, billing, service)
        "where's my": 1.4,
        "wheres my": 1.4,
        "tracking says": 1.2,
        "says delivered": 1.6,
        "marked as delivered": 1.8,
        "not here": 0.9,
        "hasn't shipped": 1.6,
        "not shipped": 1.4,
        "backordered": 1.0,
        "lost in the post": 1.8,
        "didn't turn up": 1.5,
        "missed delivery": 1.2,
        "stranded": 1.5,
        "missed my connection": 1.8,
        "missed connection": 1.5,
        "diverted": 0.8,
        "overbooked": 1.5,
        "bumped": 0.8,
        "lost luggage": 1.8,
        "lost bag": 1.6,
        "lost my bag": 1.8,
        "on the tarmac": 1.2,
        "rebooked": 0.8,
        "overcrowded": 1.3,
        "late again": 1.6,
        "running late": 0.9,
        "slow internet": 1.5,
        "internet is": 0.6,
        "wifi is": 0.6,
        "buffering": 1.2,
        "disconnecting": 1.3,
        "disconnects": 1.2,
        "intermittent": 1.0,
        "after the update": 1.2,
        "since the update": 1.4,
        "latest update": 0.8,
        "update broke": 1.8,
        "can't sign": 1.3,
        "can't login": 1.4,
        "can't log in": 1.4,
        "error message": 1.2,
        "black screen": 1.4,
        "blue screen": 1.2,
        "won't turn": 1.4,
        "won't charge": 1.5,
        "drains": 1.0,
        "draining": 1.0,
        "overheating": 1.4,
        "bricked": 1.6,
        "freezes": 1.2,
        "keeps freezing": 1.6,
        "unresponsive": 1.3,
        "burnt": 1.0,
        "raw": 0.6,
        "hair in": 1.4,
        "missing items": 1.5,
        "forgot my": 1.0,
        "food poisoning": 1.8,
        "hidden fees": 1.6,
        "extra charge": 1.2,
        "charged for": 1.1,
        "late fee": 1.0,
        "chargeback": 1.4,
        "dispute": 1.0,
        "hung up on me": 1.8,
        "got transferred": 1.2,
        "transferred me": 1.2,
        "no help": 1.4,
        "no one cares": 1.8,
        "don't care": 1.2,
        "doesn't care": 1.2,
        "one star": 1.2,
        "zero stars": 1.4,
        "get it together": 1.5,
        "nothing works": 1.6,
        "never works": 1.6,
        "doesn't even": 1.0,
        "didn't even": 1.0,
        "not even": 0.6,
        "still nothing": 1.5,
        "no explanation": 1.4,
        "no apology": 1.5,
        "no compensation": 1.6,
        "not acceptable": 1.8,
        "poor quality": 1.6,
        "cheaply made": 1.5,
        "fell apart": 1.6,
        "falling apart": 1.5,
        "came apart": 1.4,
        "stopped": 0.6,
        "dead": 0.6,
        "dies": 0.6,
        "died": 0.6,
        # first-person accounts of a purchase or a wait, the usual opening of a complaint
        "i've been": 0.6,
        "i have been": 0.6,
        "we've been": 0.6,
        "i ordered": 0.8,
        "we ordered": 0.8,
        "ordered": 0.4,
        "i bought": 0.6,
        "bought": 0.3,
        "i paid": 0.9,
        "paid": 0.4,
        "received": 0.3,
        "arrived": 0.3,
        "hrs": 0.4,
        "mins": 0.4,
        "wks": 0.4,
        "week": 0.3,
        "month": 0.3,
    },
    "question": {
        "how do i": 1.6,
        "how can i": 1.6,
        "how do you": 1.2,
        "how to": 1.0,
        "can i": 1.0,
        "can you": 0.8,
        "could you": 0.8,
        "could i": 0.9,
        "is there": 1.0,
        "are there": 1.0,
        "is it": 0.6,
        "are you": 0.6,
        "does anyone": 1.3,
        "anyone know": 1.3,
        "do you": 0.7,
        "does it": 0.7,
        "what is": 0.6,
        "what's": 0.5,
        "what are": 0.6,
        "when will": 0.7,
        "when is": 0.6,
        "where do": 0.8,
        "where can": 0.6,
        "which": 0.4,
        "wondering": 1.0,
        "any idea": 1.0,
        "any ideas": 1.0,
        "need help": 0.8,
        "help me": 0.7,
        "please help": 0.8,
        "is this": 0.5,
        "should i": 1.0,
        "do i": 0.7,
        "will it": 0.7,
        "will i": 0.7,
        "can someone": 0.9,
        "question": 1.0,
        "possible to": 0.8,
        "how long": 0.8,
        "what time": 0.8,
        "info": 0.4,
        "information": 0.4,
        "advice": 0.7,
        "explain": 0.5,
    },
    "praise": {
        "thanks": 1.0,
        "thank": 1.0,
        "thx": 0.9,
        "thankyou": 1.0,
        "love": 1.2,
        "loving": 1.2,
        "amazing": 1.3,
        "awesome": 1.3,
        "great": 0.8,
        "excellent": 1.3,
        "brilliant": 1.2,
        "fantastic": 1.3,
        "wonderful": 1.2,
        "perfect": 0.9,
        "best": 0.8,
        "kudos": 1.6,
        "shoutout": 1.6,
        "shout out": 1.6,
        "great job": 1.8,
        "good job": 1.6,
        "well done": 1.6,
        "keep it up": 1.5,
        "appreciate": 1.1,
        "appreciated": 1.1,
        "impressed": 1.3,
        "helpful": 1.1,
        "great service": 2.0,
        "excellent service": 2.2,
        "amazing service": 2.2,
        "quick response": 1.5,
        "so helpful": 1.4,
        "very helpful": 1.4,
        "above and beyond": 2.0,
        "you rock": 2.0,
        "you guys rock": 2.0,
        "love you": 1.3,
        "love it": 1.2,
        "love the": 1.0,
        "recommend": 1.0,
        "grateful": 1.2,
        "thankful": 1.2,
        "bravo": 1.4,
        "congrats": 1.2,
        "congratulations": 1.2,
        "favourite": 0.8,
        "favorite": 0.8,
        "legend": 1.0,
        "legends": 1.0,
        "stellar": 1.2,
        "outstanding": 1.3,
        "superb": 1.3,
        "delighted": 1.2,
        "happy": 0.6,
        "pleased": 0.8,
        "fast delivery": 1.4,
        "quick delivery": 1.4,
        "gracias": 1.0,
        "merci": 1.0,
        "danke": 1.0,
        "obrigado": 1.0,
        "obrigada": 1.0,
        "grazie": 1.0,
        "bedankt": 1.0,
    },
    "sales_lead": {
        "want to buy": 2.4,
        "wanna buy": 2.2,
        "looking to buy": 2.4,
        "like to buy": 2.2,
        "planning to buy": 2.2,
        "thinking of buying": 2.2,
        "thinking about buying": 2.2,
        "how much": 1.8,
        "price": 1.5,
        "prices": 1.4,
        "pricing": 1.6,
        "quote": 1.4,
        "cost": 1.0,
        "costs": 0.9,
        "upgrade my": 1.8,
        "upgrade to": 1.3,
        "interested in": 1.6,
        "where can i buy": 2.6,
        "where can i get": 1.8,
        "where to buy": 2.4,
        "do you ship": 2.4,
        "ship to": 1.3,
        "deliver to": 1.2,
        "in stock": 1.5,
        "back in stock": 1.5,
        "available in": 1.2,
        "discount": 1.0,
        "promo": 0.9,
        "coupon": 1.0,
        "deal": 0.5,
        "wholesale": 1.8,
        "bulk": 1.2,
        "demo": 1.2,
        "free trial": 1.5,
        "trial": 0.8,
        "sign up": 1.0,
        "subscribe": 0.9,
        "subscription": 0.5,
        "purchase": 1.1,
        "buy": 1.1,
        "buying": 1.0,
        "order one": 1.4,
        "pre-order": 1.6,
        "preorder": 1.6,
        "plans": 0.6,
        "package": 0.4,
        "packages": 0.6,
        "for my business": 1.3,
        "for our team": 1.2,
        "enterprise": 1.0,
        "do you sell": 2.2,
        "do you have": 0.7,
        "do you offer": 1.4,
        "do you deliver": 1.8,
        "how do i order": 1.8,
        "can i order": 1.6,
        "can i buy": 2.0,
        "switch to": 1.0,
        "switching to": 1.0,
        "sell": 0.5,
        "new customer": 1.2,
        "rates": 0.7,
        "tariff": 0.8,
        "fee": 0.5,
        "fees": 0.6,
    },
    "legal_threat": {
        "lawyer": 2.2,
        "lawyers": 2.2,
        "attorney": 2.2,
        "attorneys": 2.2,
        "solicitor": 2.0,
        "solicitors": 2.0,
        "sue": 1.8,
        "suing": 2.2,
        "sued": 1.6,
        "lawsuit": 2.4,
        "lawsuits": 2.0,
        "legal action": 2.6,
        "legal": 0.8,
        "small claims": 2.6,
        "court": 1.3,
        "see you in court": 2.8,
        "regulator": 2.2,
        "regulators": 2.0,
        "fcc": 2.2,
        "ftc": 2.2,
        "cfpb": 2.2,
        "ofcom": 2.2,
        "ofgem": 2.2,
        "ofwat": 2.2,
        "ombudsman": 2.4,
        "trading standards": 2.6,
        "defamation": 2.4,
        "defamatory": 2.4,
        "libel": 2.2,
        "slander": 2.0,
        "class action": 2.8,
        "litigation": 2.4,
        "cease and desist": 2.6,
        "attorney general": 2.6,
        "better business bureau": 2.4,
        "bbb": 1.8,
        "consumer protection": 2.0,
        "report you to": 1.8,
        "reporting you to": 1.8,
        "consumer rights": 1.6,
        "accc": 2.2,
        "legal team": 1.6,
        "my rights": 1.2,
        "abogado": 2.2,
        "demanda": 1.4,
        "avocat": 2.2,
        "anwalt": 2.2,
        "avvocato": 2.2,
        "advogado": 2.2,
        "advocaat": 2.2,
    },
    # Labels that are not routing intents: they are scored in the same token scan.
    "feature_request": {
        "feature request": 2.6,
        "would be nice": 1.8,
        "would be great if": 2.0,
        "it would be great": 1.6,
        "would love to see": 2.2,
        "would love it if": 1.8,
        "please add": 2.2,
        "pls add": 2.0,
        "you should add": 2.4,
        "you should make": 1.8,
        "can you add": 2.0,
        "could you add": 2.0,
        "why not add": 1.8,
        "add an option": 2.4,
        "add the option": 2.4,
        "option to": 1.2,
        "suggestion": 1.6,
        "suggest": 1.0,
        "i wish": 1.2,
        "wish you": 1.4,
        "wish there was": 2.0,
        "feedback": 1.2,
        "dark mode": 2.0,
        "bring back": 1.6,
        "new feature": 1.8,
        "feature": 1.0,
        "improve": 0.8,
        "improvement": 1.0,
        "idea": 0.8,
    },
    "outage": {
        "outage": 2.6,
        "outages": 2.4,
        "is down": 2.2,
        "are down": 2.0,
        "down again": 2.4,
        "went down": 2.0,
        "service down": 2.4,
        "site down": 2.4,
        "app down": 2.4,
        "servers down": 2.4,
        "not loading": 2.0,
        "won't load": 2.0,
        "wont load": 2.0,
        "doesn't load": 1.8,
        "can't log in": 1.8,
        "cant log in": 1.8,
        "can't login": 1.8,
        "cant login": 1.8,
        "unable to log": 1.8,
        "no service": 2.0,
        "no signal": 2.0,
        "no internet": 2.2,
        "no power": 2.2,
        "power cut": 2.4,
        "internet down": 2.6,
        "offline": 1.4,
        "crashing": 1.6,
        "crashes": 1.4,
        "crashed": 1.4,
        "keeps crashing": 2.2,
        "server error": 2.2,
        "service unavailable": 2.6,
        "disruption": 1.8,
        "interruption": 1.6,
        "anyone else": 0.9,
        "for everyone": 0.8,
        "not working": 1.0,
    },
    "employee": {
        "your employee": 2.2,
        "your employees": 2.2,
        "your staff": 1.8,
        "staff member": 2.0,
        "the cashier": 1.6,
        "your agent": 1.6,
        "the agent": 1.2,
        "your rep": 1.6,
        "the driver": 1.2,
        "your driver": 1.8,
        "the manager": 1.2,
        "rude": 1.2,
        "was rude": 2.0,
        "so rude": 1.8,
        "attitude": 1.0,
        "unprofessional": 1.8,
        "hiring": 2.0,
        "job": 1.0,
        "jobs": 1.2,
        "vacancy": 2.2,
        "vacancies": 2.2,
        "career": 1.4,
        "careers": 1.8,
        "internship": 2.2,
        "apply for": 1.2,
        "job application": 2.6,
        "interview": 1.2,
        "i work for": 2.0,
        "i work at": 2.0,
        "work for you": 1.8,
        "as an employee": 2.4,
        "former employee": 2.6,
        "ex employee": 2.6,
        "employee": 1.2,
        "employees": 1.0,
    },
    "press": {
        "journalist": 2.4,
        "reporter": 2.2,
        "press inquiry": 2.8,
        "press enquiry": 2.8,
        "media inquiry": 2.8,
        "media enquiry": 2.8,
        "press office": 2.6,
        "press release": 2.4,
        "for a story": 2.4,
        "for an article": 2.4,
        "writing an article": 2.6,
        "writing a story": 2.6,
        "working on a story": 2.6,
        "request for comment": 2.8,
        "for comment": 1.6,
        "comment on": 1.0,
        "statement": 1.2,
        "on the record": 2.2,
        "interview request": 2.6,
        "newspaper": 1.8,
        "editor": 1.4,
        "podcast": 1.2,
        "news": 0.8,
    },
    "spam": {
        "follow back": 2.4,
        "follow me": 1.8,
        "followers": 0.6,
        "free followers": 2.8,
        "giveaway": 1.8,
        "click here": 2.2,
        "click the link": 2.0,
        "check out my": 2.0,
        "check my profile": 2.4,
        "bitcoin": 1.8,
        "crypto": 1.6,
        "forex": 2.2,
        "nft": 1.4,
        "airdrop": 2.2,
        "make money": 2.2,
        "earn money": 2.2,
        "work from home": 1.8,
        "investment opportunity": 2.6,
        "dm me for": 2.2,
        "promo code": 0.8,
        "casino": 2.2,
        "viagra": 2.8,
        "onlyfans": 2.4,
        "subscribe to my": 2.4,
        "sub4sub": 2.8,
        "f4f": 2.4,
    },
}
# Where each cue's score is kept: the routing intents first (in INTENTS order), then the other labels.
_CUE_SLOTS = INTENTS + LABELS[5:]
_INTENT_INDEX = {name: i for i, name in enumerate(_CUE_SLOTS)}
_COMPLAINT, _QUESTION, _PRAISE, _SALES, _LEGAL, _OTHER = range(6)

# phrase -> tuple of (intent index, weight); split by length for the token scan.
_CUE1: dict[str, tuple[tuple[int, float], ...]] = {}
_CUEN: dict[str, tuple[tuple[int, float], ...]] = {}
_CUE_FIRST: frozenset[str]


def _build_cues() -> frozenset[str]:
    acc1: dict[str, list[tuple[int, float]]] = {}
    accn: dict[str, list[tuple[int, float]]] = {}
    for intent, cues in _CUES.items():
        idx = _INTENT_INDEX[intent]
        for phrase, weight in cues.items():
            target = accn if " " in phrase else acc1
            target.setdefault(phrase, []).append((idx, weight))
    _CUE1.update({k: tuple(v) for k, v in acc1.items()})
    _CUEN.update({k: tuple(v) for k, v in accn.items()})
    return frozenset(p.split(" ", 1)[0] for p in accn)


_CUE_FIRST = _build_cues()
# Multi-word phrases: phrase -> (intent cues or None, valence or None); _PREFIXES holds every
# prefix of two words or more, so the scan stops as soon as no phrase can match.
_PHRASES: dict[str, tuple[tuple[tuple[int, float], ...] | None, float | None]] = {
    p: (_CUEN.get(p), _PHRASE_VALENCE.get(p)) for p in set(_CUEN) | set(_PHRASE_VALENCE)
}
_PREFIXES = frozenset(
    " ".join(parts[:k]) for parts in (p.split(" ") for p in _PHRASES) for k in range(2, len(parts) + 1)
)

# Unigram cues of these intents are ignored when negated ("no problem", "not great").
_NEGATABLE = frozenset((_COMPLAINT, _PRAISE))

_QUESTION_STARTERS = frozenset(
    """how what when where why who which whats can could would will is are do does did should
    shall may any anyone anybody""".split()
)

# --------------------------------------------------------------------------------------------
# Language profiles (function words and common customer-service words)
# --------------------------------------------------------------------------------------------

_STOPWORDS: dict[str, str] = {
    "en": """the and is are was were be been being of to in on for with my your you i it this that
        have has had not but what why how when where who will would can could should just from they
        we our me at an or if so do does did don't i'm it's there their about get got still any
        thanks thank please hi hello its very really out up all yes one now again after because
        than them he she his her ur u im dont cant can't won't didn't doesn't isn't been has by
        off over guys today yet here which some want need never ever way too""",
    "es": """el la los las un una unos unas que de del en y es por para con no mi mis su sus pero
        muy más mas como qué cómo cuándo dónde porque está están estoy son ser fue hay ya yo tu tú
        me te se lo le les al esto este esta eso todo nada gracias hola pedido cuenta ayuda sin
        también tengo tiene hace hasta desde sí bien mal cuando donde nos ni o usted ustedes hoy
        días nunca pero siempre favor""",
    "fr": """le la les un une des de du et est en que qui pour dans pas ne je tu il elle nous vous
        ils mon ma mes ton votre vos sur avec au aux ce cette ces mais ou où très plus été suis
        sont avoir être fait merci bonjour commande compte aide toujours rien c'est j'ai n'est
        pourquoi comment quand aussi encore déjà moi toi lui leur y on ça si non oui jours depuis
        j'ai d'un d'une qu'il n'ai""",
    "de": """der die das und ist nicht ein eine einen dem den des zu mit von auf für ich du er sie es
        wir ihr mein meine mich mir dich sich auch aber noch schon wie warum wann wo was bei aus
        nach sind war hat habe haben wird kann bitte danke hallo bestellung konto immer kein keine
        nur sehr doch oder wenn dass im ins am vom zum zur heute seit seid euch gibt jetzt""",
    "pt": """o a os as um uma de do da dos das em no na nos nas e é que para por com não meu minha
        seu sua mas muito mais como quando onde porque está estou são foi tem tenho já eu você
        vocês ele ela isso isto esse essa obrigado obrigada olá pedido conta ajuda ainda nada
        também até ao pelo pela se me sim bem dias hoje estão nunca""",
    "it": """il lo la i gli le un uno una di del della dei da in con su per tra e è che non mio mia
        miei tuo suo sua ma molto più come quando dove perché sono sei ha ho hanno stato questo
        questa quello io tu lui lei noi voi grazie ciao ordine conto aiuto ancora niente anche già
        nel nella al alla sul sulla mi ti ci si cosa sempre oggi giorni mai""",
    "nl": """de het een en is van in op te dat die niet met voor zijn ik je jij u we wij mijn jouw
        uw maar ook nog al als bij naar om er wat waarom hoe wanneer waar heb hebt heeft was werd
        wordt kan kun moet bedankt dank hallo bestelling hulp altijd geen niets zeer heel erg of
        dan door uit over dit deze mij me nu wel jullie vandaag dagen nooit""",
}


def _build_stopwords() -> dict[str, tuple[tuple[str, float], ...]]:
    owners: dict[str, list[str]] = {}
    for lang, words in _STOPWORDS.items():
        for word in set(words.split()):
            owners.setdefault(word, []).append(lang)
    # A word shared by k languages carries 1/k of a vote for each.
    return {w: tuple((lang, 1.0 / len(langs)) for lang in sorted(langs)) for w, langs in owners.items()}


_LANG_WORDS = _build_stopwords()
_LANGS = tuple(_STOPWORDS)

# Letters that point at a language (added as fractional votes).
_LANG_CHARS: dict[str, tuple[tuple[str, float], ...]] = {
    "ñ": (("es", 1.5),),
    "¿": (("es", 2.0),),
    "¡": (("es", 1.5),),
    "ã": (("pt", 1.5),),
    "õ": (("pt", 1.5),),
    "ç": (("fr", 0.4), ("pt", 0.4)),
    "ß": (("de", 1.5),),
    "ä": (("de", 0.8),),
    "ö": (("de", 0.6),),
    "ü": (("de", 0.6),),
    "ê": (("fr", 0.4), ("pt", 0.4)),
    "è": (("fr", 0.5), ("it", 0.3)),
    "à": (("fr", 0.4), ("it", 0.3)),
    "ù": (("fr", 0.3), ("it", 0.3)),
    "ò": (("it", 0.6),),
    "ì": (("it", 0.6),),
    "œ": (("fr", 1.0),),
    "ĳ": (("nl", 1.0),),
}

# Non-Latin scripts: first code point of the block's range, last, language.
_SCRIPTS = (
    ("\u0400", "\u04ff", "ru"),
    ("\u0370", "\u03ff", "el"),
    ("\u0590", "\u05ff", "he"),
    ("\u0600", "\u06ff", "ar"),
    ("\u0900", "\u097f", "hi"),
    ("\u0e00", "\u0e7f", "th"),
    ("\u3040", "\u30ff", "ja"),
    ("\uac00", "\ud7af", "ko"),
    ("\u4e00", "\u9fff", "zh"),
)
_NON_LATIN_RE = re.compile(
    "[\u0370-\u03ff\u0400-\u04ff\u0590-\u06ff\u0900-\u097f\u0e00-\u0e7f\u3040-\u30ff\u4e00-\u9fff\uac00-\ud7af]"
)

# --------------------------------------------------------------------------------------------
# Regexes (all linear: no nested quantifiers, bounded repeats)
# --------------------------------------------------------------------------------------------

_EMOJI_CLASS = "\U0001f300-\U0001faff\u2600-\u27bf\u2b50\u2b55\u2300-\u23ff\u2190-\u21ff"
# Runs on lower-cased text. URLs and @mentions match outside the group and come out as "" (dropped);
# everything else is a word, an emoticon, a punctuation mark kept for scoping, or one emoji.
_TOKEN_RE = re.compile(
    r"https?://[^\s<>\"']{1,400}|www\.[^\s<>\"']{1,400}|[@＠][\w.-]{1,64}"
    r"|([^\W\d_]{1,60}(?:'[^\W\d_]{1,20})?"  # word (optionally one apostrophe: don't, l'app)
    r"|</?3|>?[:;=]['^o-]?[()\[\]dpo/\\|*]{1,2}(?![a-z0-9])|\^_?\^|-_-"  # emoticon
    r"|[!?.,;]"
    rf"|[{_EMOJI_CLASS}])"
)
_HASHTAG_RE = re.compile(r"#([A-Za-z0-9_]{1,100})")
_CAMEL_RE = re.compile(r"[A-Z]{2,}(?![a-z])|[A-Z]?[a-z]{1,60}|\d{1,20}")
_TRIPLES = tuple(ch * 3 for ch in "oeasyhuilrmzwgnpf")
_SQUEEZE_RE = re.compile(r"([^\W\d_])\1{2,50}")

_EMAIL_RE = re.compile(r"(?<![\w.+%@-])[\w.+%-]{1,64}@[A-Za-z0-9-]{1,63}\.[A-Za-z0-9.-]{2,190}")
_EMAIL_LOCAL_CHARS = frozenset(".+%-_")
# A run of digits with phone/card separators; the left boundary and the shape are checked in Python.
_NUMBER_RUN_RE = re.compile(r"\d[\d ().-]{7,30}\d(?!\w)")
_SEPARATORS_RE = re.compile(r"[ ().-]{1,5}")
_ID_RE = re.compile(
    r"\b(account|acct|membership|member|customer|order|booking|reservation|reference|ref"
    r"|confirmation|tracking|invoice|ticket|case|policy)\b"
    r"([ \t]{0,3}(?:number|numbers|num|nr|no\.?|id|code|reference|ref|#))?"
    r"[ \t]{0,3}((?:is|was|:|=|-)?)[ \t]{0,3}(#?)[ \t]{0,2}"
    r"([a-z0-9][a-z0-9-]{3,29})\b"
)
_ID_KEYWORDS = frozenset(
    """account acct membership member customer order booking reservation reference ref
    confirmation tracking invoice ticket case policy""".split()
)
_ACCOUNT_WORDS = frozenset(("account", "acct", "membership", "member", "customer", "policy"))
_DIGIT_RE = re.compile(r"\d")

# Street addresses: a house number next to a street word, in the shapes of the languages we detect.
_STREET_WORDS = frozenset(
    """street st avenue ave road rd lane ln drive dr boulevard blvd way court ct place pl terrace close
    crescent parkway pkwy rue allée chemin impasse calle avenida rua viale piazza""".split()
)
_STREET_SUFFIXES = ("straße", "strasse", "str", "weg", "platz", "gasse", "allee", "straat", "laan", "plein", "gracht")
_ADDRESS_RES = (
    # 221B Baker Street, 1600 Pennsylvania Ave
    re.compile(
        r"\b\d{1,5}[A-Za-z]?,?[ \t]{1,3}(?:[A-Z][a-z]{1,20}\.?[ \t]{1,3}){1,3}"
        r"(?:Street|St|Avenue|Ave|Road|Rd|Lane|Ln|Drive|Dr|Boulevard|Blvd|Way|Court|Ct|Place|Pl|Terrace|Close"
        r"|Crescent|Parkway|Pkwy)\b"
    ),
    # 12 main street (lower case: the words between are checked in Python)
    re.compile(r"\b\d{1,5}[ \t]{1,3}((?:[a-z]{2,20}[ \t]{1,3}){1,2})(?:street|avenue|boulevard|blvd|ave|st)\b"),
    # 12 rue de la Paix, 5 avenida Reforma
    re.compile(
        r"\b\d{1,4}(?:bis|ter)?,?[ \t]{1,3}(?:rue|avenue|boulevard|bd|allée|chemin|impasse|place|calle|avenida|rua)"
        r"[ \t]{1,3}[\w'-]{2,30}",
        re.IGNORECASE,
    ),
    # calle Mayor 5, rua Augusta, 12
    re.compile(
        r"\b(?:rue|calle|avenida|rua|viale|piazza)[ \t]{1,3}(?:[\w'-]{2,30}[ \t]{1,3}){1,4},?[ \t]{0,3}"
        r"(?:n[º°o]\.?[ \t]{0,2})?\d{1,4}\b",
        re.IGNORECASE,
    ),
    # Hauptstraße 5, Keizersgracht 123
    re.compile(
        r"\b[A-ZÄÖÜ][a-zäöüß]{2,30}(?:straße|strasse|str\.|weg|platz|gasse|allee|straat|laan|plein|gracht)"
        r"[ \t]{1,3}\d{1,4}[a-z]?\b"
    ),
)
# Words that make "3 hours down the street" a distance, not an address.
_NOT_STREET_NAMES = frozenset(
    """the a an my our your this that on in at of to from down up across along by near off hours hour days
    day weeks week minutes mins times blocks miles km meters""".split()
)


def _has_address(text: str, words: list[str] | None) -> bool:
    if words is not None and _STREET_WORDS.isdisjoint(words) and not any(w.endswith(_STREET_SUFFIXES) for w in words):
        return False
    for i, pattern in enumerate(_ADDRESS_RES):
        for m in pattern.finditer(text):
            if i == 1 and not _NOT_STREET_NAMES.isdisjoint(m.group(1).split()):
                continue
            return True
    return False


# --------------------------------------------------------------------------------------------
# Private data
# --------------------------------------------------------------------------------------------


def _luhn_ok(digits: str) -> bool:
    total = 0
    parity = len(digits) % 2
    for i, ch in enumerate(digits):
        d = ord(ch) - 48
        if i % 2 == parity:
            d *= 2
            if d > 9:
                d -= 9
        total += d
    return total % 10 == 0


def _phone_like(candidate: str, digits: str) -> bool:
    n = len(digits)
    if candidate[0] == "+":
        return 9 <= n <= 15
    lengths = tuple(len(g) for g in _SEPARATORS_RE.split(candidate) if g)
    if n == 10 and lengths in ((3, 3, 4), (10,), (3, 7), (6, 4)):
        return True  # US: 555 123 4567, (555) 123-4567, 5551234567
    if n == 11 and digits[0] == "1" and lengths in ((1, 3, 3, 4), (11,), (4, 3, 4), (1, 10), (1, 3, 7)):
        return True  # US with country code 1
    # National formats with a trunk 0: 020 7946 0000, 06 12 34 56 78, 0612345678, 030 1234567
    return 9 <= n <= 12 and digits[0] == "0" and all(1 < x <= 8 for x in lengths[1:])


def _has_email(text: str) -> bool:
    at = text.find("@")
    while at != -1:
        if at > 0:
            prev = text[at - 1]
            if prev.isalnum() or prev in _EMAIL_LOCAL_CHARS:
                return _EMAIL_RE.search(text) is not None
        at = text.find("@", at + 1)
    return False


def _private_data(text: str, words: list[str] | None = None) -> tuple[str, ...]:
    """Kinds of private data in an already cut text (words: its tokens, if already known)."""
    found: set[str] = set()
    if "@" in text and _has_email(text):
        found.add("email")
    runs = _NUMBER_RUN_RE.finditer(text)
    claimed: list[tuple[int, int]] = []
    low = None
    if (words is None or not _ID_KEYWORDS.isdisjoint(words)) and _DIGIT_RE.search(text):
        low = text.lower()
        for m in _ID_RE.finditer(low):
            keyword, label, verb, hash_, ident = m.groups()
            ndigits = sum(ch.isdigit() for ch in ident)
            if not ndigits:
                continue
            if label or verb or hash_:
                if ndigits < 3 and len(ident) < 5:
                    continue
            elif ndigits < 5 or len(ident) < 6:
                continue
            found.add("account_number" if keyword in _ACCOUNT_WORDS else "order_number")
            claimed.append(m.span(5))
    for m in runs:
        start, end = m.span()
        if start > 0:
            prev = text[start - 1]
            if prev == "+" or prev == "(":
                start -= 1
                prev = text[start - 1] if start > 0 else " "
                if prev == "+":
                    start -= 1
                    prev = text[start - 1] if start > 0 else " "
            if prev.isalnum() or prev == "_":
                continue
        if claimed and any(s < end and start < e for s, e in claimed):
            continue
        candidate = text[start:end]
        digits = "".join(ch for ch in candidate if ch.isdigit())
        n = len(digits)
        card_shaped = 13 <= n <= 19 and "(" not in candidate and "." not in candidate and candidate[0] != "+"
        if card_shaped and _luhn_ok(digits) and digits.strip("0"):
            found.add("card_number")
            continue
        if 9 <= n <= 15 and _phone_like(candidate, digits):
            found.add("phone")
    if _DIGIT_RE.search(text) and _has_address(text, words):
        found.add("street_address")
    if not found:
        return ()
    return tuple(k for k in PRIVATE_KINDS if k in found)


def find_private_data(text: str) -> tuple[str, ...]:
    """Kinds of personal data in the post, in PRIVATE_KINDS order."""
    if not text:
        return ()
    return _private_data(text[:MAX_TEXT])


# --------------------------------------------------------------------------------------------
# Tokenising and the per-word table
# --------------------------------------------------------------------------------------------

_BREAK, _BUT, _PHRASE, _QSTART = 1, 2, 4, 8
_LANG_INDEX = {lang: i for i, lang in enumerate(_LANGS)}


def _build_info() -> dict[str, tuple[int, float | None, tuple | None, int | tuple | None]]:
    """One dict lookup per token: (flag bits, valence, unigram intent cues, language votes)."""
    keys = set(LEXICON) | set(_CUE1) | _CUE_FIRST | _PHRASE_FIRST | _QUESTION_STARTERS | _BREAKS
    keys |= _BUT_WORDS | set(_LANG_WORDS)
    info = {}
    for w in keys:
        bits = (
            (_BREAK if w in _BREAKS else 0)
            | (_BUT if w in _BUT_WORDS else 0)
            | (_PHRASE if (w in _CUE_FIRST or w in _PHRASE_FIRST) else 0)
            | (_QSTART if w in _QUESTION_STARTERS else 0)
        )
        votes = _LANG_WORDS.get(w)
        if votes:
            # one language: its index; several: ((index, weight), ...)
            votes = (
                _LANG_INDEX[votes[0][0]]
                if len(votes) == 1
                else tuple((_LANG_INDEX[lang], weight) for lang, weight in votes)
            )
        info[w] = (bits, LEXICON.get(w), _CUE1.get(w), votes)
    return info


_INFO = _build_info()

# Words that matter in the three tokens before a sentiment word: a booster's value, or a marker.
_CONTEXT_WORDS: dict[str, float | str] = dict(_BOOSTERS)
_CONTEXT_WORDS.update(dict.fromkeys(_NEGATORS, "negate"))
_CONTEXT_WORDS.update(dict.fromkeys(_BUT_WORDS, "but"))
_CONTEXT_WORDS.update(dict.fromkeys(_BREAKS, "break"))


def _split_hashtag(m: re.Match[str]) -> str:
    tag = m.group(1)
    if tag.islower() or tag.isupper():
        return " " + tag + " "
    return " " + " ".join(_CAMEL_RE.findall(tag)) + " "


def _words(text: str) -> list[str]:
    """Lower-cased tokens of a cut post: URLs and @mentions dropped, hashtags kept as words
    (#NeverAgain -> never again), elongations squeezed when that finds a known word (sooo -> so)."""
    if "#" in text:
        text = _HASHTAG_RE.sub(_split_hashtag, text)
    low = text.lower()
    # Most whitespace-separated chunks are plain words; only the others go through the regex.
    words: list[str] = []
    append = words.append
    findall = _TOKEN_RE.findall
    for chunk in low.split():
        if chunk.isalpha():
            append(chunk)
        else:
            words.extend(findall(chunk))
    if "@" in low or "/" in low or "＠" in low:
        words = list(filter(None, words))
    for tri in _TRIPLES:
        if tri in low:
            info = _INFO
            for i, w in enumerate(words):
                if len(w) > 3 and w not in info:
                    squeezed = _SQUEEZE_RE.sub(r"\1\1", w)
                    if squeezed in info:
                        words[i] = squeezed
                    else:
                        single = _SQUEEZE_RE.sub(r"\1", w)
                        if single in info:
                            words[i] = single
            break
    return words


# --------------------------------------------------------------------------------------------
# Language
# --------------------------------------------------------------------------------------------


def _script_language(text: str) -> tuple[str, float] | None:
    counts: dict[str, int] = {}
    letters = 0
    for ch in text:
        if ch.isalpha():
            letters += 1
            if ch >= "\u0370":
                for lo, hi, lang in _SCRIPTS:
                    if lo <= ch <= hi:
                        counts[lang] = counts.get(lang, 0) + 1
                        break
    if not counts or not letters:
        return None
    lang, n = max(counts.items(), key=lambda kv: kv[1])
    if lang == "zh" and counts.get("ja"):
        lang, n = "ja", n + counts["ja"]
    share = n / letters
    if share < 0.3:
        return None
    return lang, round(min(0.95, 0.4 + 0.55 * share) * min(1.0, 0.5 + n / 20), 3)


def _language(text: str, scores: list[float], hits: int) -> tuple[str, float]:
    """Decide from per-language votes (indexed like _LANGS) and the count of words that voted."""
    if not text.isascii():
        if _NON_LATIN_RE.search(text):
            by_script = _script_language(text)
            if by_script:
                return by_script
        for ch, votes in _LANG_CHARS.items():
            if ch in text:
                hits += 1
                for lang, weight in votes:
                    scores[_LANG_INDEX[lang]] += weight
    if hits < 2:
        return "und", 0.1 if hits else 0.0
    order = sorted(range(len(scores)), key=scores.__getitem__, reverse=True)
    top, second = scores[order[0]], scores[order[1]]
    if top < 1.0:
        return "und", 0.15
    share = top / sum(scores)
    margin = (top - second) / top
    amount = min(1.0, hits / 6.0)
    conf = (0.35 + 0.65 * margin) * (0.45 + 0.55 * amount) * (0.6 + 0.4 * share)
    if margin < 0.15:
        return "und", round(min(0.3, conf), 3)
    return _LANGS[order[0]], round(min(0.99, conf), 3)


def detect_language(text: str) -> tuple[str, float]:
    """(ISO 639-1 code or "und", confidence 0..1) from function-word profiles and scripts."""
    if not text:
        return "und", 0.0
    text = text[:MAX_TEXT].replace("’", "'")
    scores = [0.0] * len(_LANGS)
    hits = 0
    get = _INFO.get
    for w in _words(text):
        info = get(w)
        if info is not None and info[3] is not None:
            hits += 1
            votes = info[3]
            if votes.__class__ is int:
                scores[votes] += 1.0
            else:
                for li, weight in votes:
                    scores[li] += weight
    return _language(text, scores, hits)


# --------------------------------------------------------------------------------------------
# Sentiment and intent (one pass over the tokens)
# --------------------------------------------------------------------------------------------


def _negated(words: list[str], i: int) -> bool:
    """A negator within the three tokens before i, not across punctuation or "but"."""
    for j in range(i - 1, i - 4 if i > 3 else -1, -1):
        w = words[j]
        if w in _BREAKS or w in _BUT_WORDS:
            return False
        if w in _NEGATORS or w.endswith(_N_T):
            return True
    return False


def _context(words: list[str], i: int, valence: float) -> float:
    """Valence of the sentiment word at i after boosters/dampeners and negation in the three
    tokens before it (booster effect decays with distance; scope stops at punctuation)."""
    scalar = 0.0
    decay = 1.0
    negated = False
    in_scope = True
    for j in range(i - 1, i - 4 if i > 3 else -1, -1):
        w = words[j]
        kind = _CONTEXT_WORDS.get(w)
        if kind is None:
            if in_scope and w.endswith(_N_T):
                negated = True
        elif kind == "break":
            break
        elif kind == "but":
            in_scope = False
        elif kind == "negate":
            if in_scope:
                negated = True
        else:
            scalar += kind * decay
        decay -= 0.1
    if scalar:
        valence = valence + scalar if valence > 0 else valence - scalar
    return -0.7 * valence if negated else valence


def _analyse(text: str) -> Classification:
    words = _words(text)
    n = len(words)
    not_all_caps = not text.isupper()

    scores = [0.0] * len(_CUE_SLOTS)
    lang_scores = [0.0] * len(_LANGS)
    lang_hits = 0
    valences: list[float] = []
    positions: list[int] = []
    but_at = -1
    skip_until = -1
    exclaims = 0
    questions = 0
    at_start = True
    get = _INFO.get
    for i, w in enumerate(words):
        info = get(w)
        if info is None:
            at_start = False
            continue
        bits, v, cue, votes = info
        if votes is not None:
            lang_hits += 1
            if votes.__class__ is int:
                lang_scores[votes] += 1.0
            else:
                for li, weight in votes:
                    lang_scores[li] += weight
        if not bits and cue is None and v is None:
            at_start = False
            continue
        phrase_valence = None
        if bits:
            if bits & _BREAK:
                if w == "!":
                    exclaims += 1
                elif w == "?":
                    questions += 1
                at_start = True
                continue
            if at_start and bits & _QSTART:
                scores[_QUESTION] += 0.5
            if bits & _BUT:
                but_at = i
            if bits & _PHRASE:
                phrase = w
                for k in range(i + 1, n):
                    phrase = phrase + " " + words[k]
                    if phrase not in _PREFIXES:
                        break
                    entry = _PHRASES.get(phrase)
                    if entry is not None:
                        hit, pv = entry
                        if hit:
                            for idx, weight in hit:
                                scores[idx] += weight
                        if pv is not None:
                            phrase_valence = pv
                            skip_until = k
        at_start = False
        if phrase_valence is not None:
            valences.append(phrase_valence)
            positions.append(i)
            continue
        if cue is not None:
            negated = None
            for idx, weight in cue:
                if idx in _NEGATABLE:
                    if negated is None:
                        negated = _negated(words, i)
                    if negated:
                        continue
                scores[idx] += weight
        if v is None or i <= skip_until:
            continue
        if i + 1 < n:
            nxt = words[i + 1]
            if w in _BOOSTERS and nxt in LEXICON:
                continue  # "super good": super boosts, it is not itself scored
            if nxt == "of" and (w == "kind" or w == "sort"):
                continue
        if not_all_caps and len(w) > 2:
            upper = w.upper()
            if upper != w and upper in text:
                v += 0.7 if v > 0 else -0.7  # emphasis by capitals
        v = _context(words, i, v)
        valences.append(v)
        positions.append(i)

    # --- sentiment ---
    pos_sum = neg_sum = 0.0
    for v, i in zip(valences, positions, strict=True):
        if but_at >= 0:
            v *= 0.5 if i < but_at else 1.5
        if v > 0:
            pos_sum += v
        else:
            neg_sum += v
    raw = pos_sum + neg_sum
    if raw and exclaims:
        emphasis = 0.29 * min(exclaims, 4)
        raw += emphasis if raw > 0 else -emphasis
    compound = raw / math.sqrt(raw * raw + 15.0) if raw else 0.0
    if compound >= SENTIMENT_THRESHOLD:
        sentiment = "positive"
    elif compound <= -SENTIMENT_THRESHOLD:
        sentiment = "negative"
    else:
        sentiment = "neutral"
    evidence = pos_sum - neg_sum
    if sentiment == "neutral":
        if not evidence:
            s_conf = 0.55 if n >= 3 else 0.4
        else:
            s_conf = 0.5 - 0.3 * min(1.0, evidence / 4.0)
    else:
        minority = min(pos_sum, -neg_sum)
        mix = minority / evidence if evidence else 0.0
        s_conf = (0.45 + 0.5 * abs(compound)) * (1.0 - 0.6 * mix)

    # --- intent ---
    intent, i_conf = _decide_intent(scores, compound, questions, n, text, words)
    i_conf = round(max(0.0, min(0.99, i_conf)), 3)
    language, l_conf = _language(text, lang_scores, lang_hits)
    return Classification(
        intent=INTENTS[intent],
        intent_confidence=i_conf,
        sentiment=sentiment,
        sentiment_score=round(compound, 4),
        sentiment_confidence=round(max(0.05, min(0.99, s_conf)), 3),
        language=language,
        language_confidence=l_conf,
        private_data=_private_data(text, words),
        labels=_labels(scores, intent, i_conf, text),
    )


SENTIMENT_THRESHOLD = 0.2  # |compound| below this is neutral
_OTHER_THRESHOLD = 1.1  # intent evidence below this is "other"


def _decide_intent(
    scores: list[float], compound: float, questions: int, n: int, text: str, words: list[str]
) -> tuple[int, float]:
    if questions:
        scores[_QUESTION] += 1.2 + 0.1 * min(questions - 1, 3)
    if compound < -SENTIMENT_THRESHOLD:
        directed = "@" in text or "you" in words or "your" in words or "ur" in words
        scores[_COMPLAINT] += -compound * (2.5 if directed else 1.7)
    elif compound > SENTIMENT_THRESHOLD:
        scores[_PRAISE] += compound * 1.6
        scores[_COMPLAINT] -= compound * 0.5
    legal = scores[_LEGAL]
    if legal >= 1.6:
        return _LEGAL, (1.0 - math.exp(-legal / 1.4)) * (0.9 if legal >= 2.2 else 0.75)
    # a weak legal cue ("legal", "court") counts as complaint material
    scores[_COMPLAINT] += legal * 0.5
    scores[_LEGAL] = 0.0
    # Problem cues in a post addressed to someone (the brand) weigh more.
    if scores[_COMPLAINT] and text.lstrip()[:1] in ("@", "＠"):
        scores[_COMPLAINT] += 0.6
    # A question is how a complaint or a sales enquiry is often put: when one of those is present,
    # the question cues count for less.
    if scores[_COMPLAINT] >= 0.8 or scores[_SALES] >= 1.0:
        scores[_QUESTION] *= 0.3
    ranked = sorted(range(5), key=scores.__getitem__, reverse=True)
    best, second = ranked[0], ranked[1]
    top = scores[best]
    if top < _OTHER_THRESHOLD:
        if n < 3:
            return _OTHER, 0.1
        return _OTHER, (0.2 + 0.1 * (top / _OTHER_THRESHOLD)) if top else 0.15
    margin = (top - scores[second]) / top
    return best, (1.0 - math.exp(-top / 1.6)) * (0.45 + 0.55 * margin)


_LABEL_THRESHOLD = 1.5  # cue evidence from which a label other than the main intent holds
_SPAM = _INTENT_INDEX["spam"]


def _labels(scores: list[float], intent: int, intent_confidence: float, text: str) -> tuple[tuple[str, float], ...]:
    # A post that is mostly links is how link spam looks, whatever its words.
    if text.count("http") >= 3:
        scores[_SPAM] += 1.6
    found: list[tuple[str, float]] = []
    for i, name in enumerate(_CUE_SLOTS):
        if i == intent:
            if i != _OTHER:
                found.append((name, intent_confidence))
        elif i != _OTHER and scores[i] >= _LABEL_THRESHOLD:
            found.append((name, round(min(0.95, 1.0 - math.exp(-scores[i] / 1.6)), 3)))
    found.sort(key=lambda item: -item[1])
    return tuple(found)


_EMPTY = Classification("other", 0.0, "neutral", 0.0, 0.3, "und", 0.0, ())


def classify(text: str) -> Classification:
    """Intent, sentiment, language and private-data kinds of one post (any length, any content)."""
    if not text:
        return _EMPTY
    text = text[:MAX_TEXT]
    if "’" in text:
        text = text.replace("’", "'")
    if text.isspace():
        return _EMPTY
    return _analyse(text)


# --------------------------------------------------------------------------------------------
# Throughput check, run by hand:  python -m hubbub.lib.classify --bench [posts.csv]
# --------------------------------------------------------------------------------------------

_BENCH_POSTS = (
    "@acmeair my flight AC123 has been delayed 4 hours and nobody at the gate knows anything. "
    "Worst airline ever, never again #fail",
    "Hi @acmebank, how do I change the phone number on my account? The app keeps saying error 500 :(",
    "Huge thanks to @acmeshop for the super quick delivery, the jacket is perfect!! ❤️🙏",
    "@acmetel how much is the unlimited plan? Thinking about switching from my current provider",
    "@acmepower you charged me twice this month. If this isn't refunded by Friday my lawyer will be in touch.",
    "Just landed in Lisbon, sunny and warm. Time for coffee ☕ https://example.com/p/123",
    "@acmestore ¿Dónde está mi pedido? Llevo dos semanas esperando y nadie me responde.",
    "@acmecloud the dashboard is not bad at all but the export is really slow today...",
)


def _bench(path: str | None = None, seconds: float = 2.0) -> None:
    """Posts per second of CPU time (process_time, so other load on the machine counts less)."""
    import csv
    import time

    posts: list[str] = list(_BENCH_POSTS)
    if path:
        with open(path, encoding="utf-8", newline="") as fh:
            posts = [row[0] for row in csv.reader(fh) if row][1:] or posts

    def rate(sample: list[str]) -> float:
        done = 0
        start = time.process_time()
        while time.process_time() - start < seconds:
            for p in sample:
                classify(p)
            done += len(sample)
        return done / (time.process_time() - start)

    lengths = sorted(len(p) for p in posts)
    print(f"all: {rate(posts):,.0f} posts/s (n={len(posts)}, median length {lengths[len(lengths) // 2]})")
    for lo, hi in ((0, 100), (100, 140), (140, 200), (200, 281)):
        sample = [p for p in posts if lo <= len(p) < hi]
        if len(sample) >= 5:
            print(f"{lo}-{hi - 1} chars: {rate(sample):,.0f} posts/s (n={len(sample)})")
    for label, hostile in (("100 KB emoji", "😡" * 100_000), ("nested markup", "<div>" * 20_000)):
        t0 = time.perf_counter()
        classify(hostile)
        print(f"{label}: {(time.perf_counter() - t0) * 1000:.2f} ms")


if __name__ == "__main__":
    import sys

    if "--bench" in sys.argv:
        args = [a for a in sys.argv[1:] if a != "--bench"]
        _bench(args[0] if args else None)
    else:
        for line in sys.argv[1:] or sys.stdin:
            print(classify(line))
