"""Offline default complaint severity of a post, 0..4.

The levels follow the complaint-severity scale used in the research on complaints in social media
(Trosborg's taxonomy, as applied by Jin & Aletras 2021):

  0  none            not a complaint
  1  no explicit reproach   a problem is reported, nobody is reproached ("my order hasn't arrived")
  2  disapproval     explicit negative feelings about it ("so disappointed, really annoying")
  3  accusation      the brand is said to have done something wrong ("you charged me twice")
  4  blame           the brand is held responsible for the harm ("you ruined my trip, your fault")

Pure Python: classify() decides whether the post is a complaint at all, and its sentiment score
measures the disapproval; a few precompiled patterns find accusation and blame. The text is cut
to MAX_TEXT characters before any pattern runs.
"""

from __future__ import annotations

import re

from hubbub.lib.classify import MAX_TEXT, Classification, classify

__all__ = ["SEVERITY_LABELS", "reproach_cues", "severity"]

SEVERITY_LABELS = ("0", "1", "2", "3", "4")

# Every pattern is matched against the lower-cased text (re.IGNORECASE is several times slower).
_YOU = r"(?:you|u|ur|ya|you've|youve|you have|you guys|y'all|they|they've|@\w+)"

# Holding the brand responsible for the harm.
_BLAME = re.compile(
    r"\b(?:"
    r"your fault|(?:thanks|thank you) to (?:you|@\w+)|because of (?:you|@\w+)|blame|to blame|"
    r"shame on|you people|responsible for|ruined|ruin(?:ing)? my|cost me|costing me|"
    r"made me (?:miss|lose|pay|spend|wait)|never again|never (?:using|use|buying|buy|flying|fly) "
    r"|worst (?:company|airline|service|customer service|experience|app|bank|provider|store)|"
    r"disgrace|how dare|you should be ashamed|sue|lawsuit|lawyer|"
    r"(?:cancel+ing|switching|leaving|closing) (?:my|our)|losing (?:trust|faith)|lost (?:a|another) customer|"
    r"(?:return|returning) all|every (?:single|fucking|damn) time|killing me"
    r")",
)

# Saying the brand did something reprehensible.
_ACCUSATION = re.compile(
    r"\b(?:" + _YOU + r" (?:(?:have|had|just|still|keep|always|never) )?(?:charged|overcharged|lost|cancel+ed|took|"
    r"promised|told|refused|ignored|ignore|ignoring|broke|damaged|stole|lied|lie|sent|sold|screwed|messed|"
    r"failed|forgot|keep|can't|cant|won't|wont|don't|dont|didn't|didnt|haven't|havent|still|changed|"
    r"deleted|closed|blocked|delayed|left|short ?changed|denied|deliver|delivered|provide|make|made)"
    r"|your (?:staff|driver|drivers|agent|agents|rep|reps|employee|employees|team|people|company|"
    r"store|manager|support|customer service|service|system|app|website|site|products?|program|programming)\b"
    r"|lied|liars?|scam(?:med|mers?)?|ripped off|rip ?off|stole|stolen|false advertising|overcharged|"
    r"charged me|took my money|fraud|misled|misleading|incompetent|rude|racist|crappy|shit\w*|fuck\w*|h8|crap"
    r")",
)

# Explicit negative feelings, beyond what the sentiment score shows.
_DISAPPROVAL = re.compile(
    r"(?:\b(?:disappoint\w*|frustrat\w*|annoy\w*|angry|upset|unacceptable|ridiculous|terrible|awful|"
    r"horrible|worst|pathetic|disgust\w*|appalling|sucks?|hate|fed up|sick of|not happy|smh|wtf|ugh|ffs|"
    r"seriously|useless|joke|shocking|poor|bad|unhappy|furious|livid)\b|!!|\?\?)",
)

_COMPLAINT_INTENTS = frozenset(("complaint", "legal_threat"))
_DISAPPROVAL_SCORE = -0.45  # sentiment score at or below which the post voices disapproval


def severity(text: str, classification: Classification | None = None) -> int:
    """Severity 0..4 of one post; pass classify(text) when it is already known."""
    text = (text or "")[:MAX_TEXT]
    c = classification if classification is not None else classify(text)
    if c.intent not in _COMPLAINT_INTENTS:
        return 0
    if c.intent == "legal_threat":
        return 4
    text = text.lower()
    if _BLAME.search(text):
        return 4
    if _ACCUSATION.search(text):
        return 3
    if c.sentiment_score <= _DISAPPROVAL_SCORE or _DISAPPROVAL.search(text):
        return 2
    return 1


def reproach_cues(text: str) -> tuple[bool, bool, bool]:
    """Whether the post blames, accuses, or voices disapproval, by the patterns above (features for
    hubbub.lib.textmodel)."""
    text = (text or "")[:MAX_TEXT].lower()
    return (
        _BLAME.search(text) is not None,
        _ACCUSATION.search(text) is not None,
        _DISAPPROVAL.search(text) is not None,
    )
