"""Offline post understanding: intent, sentiment, language, private data.

All example posts are made up for these tests. No database, no timing assertions.
"""

import dataclasses

import pytest

from hubbub.lib.classify import (
    INTENTS,
    LABELS,
    MAX_TEXT,
    Classification,
    classify,
    detect_language,
    find_private_data,
)

# --------------------------------------------------------------------------------------------
# API shape
# --------------------------------------------------------------------------------------------


def test_returns_frozen_classification_with_valid_fields():
    c = classify("@zephyrbank how do I reset my PIN?")
    assert isinstance(c, Classification)
    assert c.intent in INTENTS
    assert c.sentiment in ("negative", "neutral", "positive")
    assert -1.0 <= c.sentiment_score <= 1.0
    for conf in (c.intent_confidence, c.sentiment_confidence, c.language_confidence):
        assert 0.0 <= conf <= 1.0
    assert isinstance(c.private_data, tuple)
    with pytest.raises(dataclasses.FrozenInstanceError):
        c.intent = "praise"  # type: ignore[misc]


# --------------------------------------------------------------------------------------------
# Intent
# --------------------------------------------------------------------------------------------

COMPLAINTS = [
    "@skylark_air flight SK212 delayed again, 3 hours at the gate and still waiting. Worst airline ever",
    "@voltmobile you charged me twice for May and no one answers the phone. Fix this!",
    "@parcelpoint my parcel was marked as delivered but it never arrived. Terrible service",
    "@brewbox the machine I bought last week is already broken. I want a refund, never again",
    "@streamly app keeps crashing since the update, completely useless #fail",
]


@pytest.mark.parametrize("text", COMPLAINTS)
def test_clear_complaints(text):
    c = classify(text)
    assert c.intent == "complaint"
    assert c.sentiment == "negative"
    assert c.intent_confidence >= 0.5


QUESTIONS = [
    "@zephyrbank how do I change the address on my statements?",
    "Does anyone know if the Lumen app works offline?",
    "@fitforge is there a way to export my workout history?",
    "@cloudnest can I share a folder with someone outside my team?",
]


@pytest.mark.parametrize("text", QUESTIONS)
def test_clear_questions(text):
    assert classify(text).intent == "question"


PRAISE = [
    "Huge thanks to @greengrocer for the quick delivery, everything was fresh and perfect!",
    "@novaphone love the new update, great job team 👏❤️",
    "Shoutout to Maria at @cityhotel, amazing service and so helpful. Thank you!",
]


@pytest.mark.parametrize("text", PRAISE)
def test_clear_praise(text):
    c = classify(text)
    assert c.intent == "praise"
    assert c.sentiment == "positive"


SALES = [
    "@solarly how much would panels cost for a 3 bedroom house? Interested in a quote",
    "@kettlecraft where can I buy the copper kettle in Canada? Do you ship to Toronto?",
    "@netwave I want to upgrade my plan to the 1 Gbit one, what's the price?",
    "Looking to buy 40 licences for our team, do you offer a discount for nonprofits?",
]


@pytest.mark.parametrize("text", SALES)
def test_sales_leads(text):
    assert classify(text).intent == "sales_lead"


LEGAL = [
    "@voltmobile you overcharged me for 6 months. My lawyer will be in touch, see you in small claims court",
    "I am filing a complaint with the FCC and the attorney general about @netwave",
    "@rentright if the deposit is not returned I will take legal action. This is a scam",
    "Talking to a solicitor about a class action against @quickloan",
]


@pytest.mark.parametrize("text", LEGAL)
def test_legal_threats_win_over_complaint(text):
    c = classify(text)
    assert c.intent == "legal_threat"
    assert c.intent_confidence >= 0.5


def test_plain_text_without_cues_is_other_with_low_confidence():
    c = classify("Walking the dog along the river this morning")
    assert c.intent == "other"
    assert c.intent_confidence < 0.35


def test_confidence_lower_without_cues_than_for_clear_posts():
    bare = classify("The meeting is on Tuesday")
    clear_complaint = classify(COMPLAINTS[1])
    clear_legal = classify(LEGAL[0])
    assert bare.intent_confidence < clear_complaint.intent_confidence
    assert bare.intent_confidence < clear_legal.intent_confidence
    assert bare.intent_confidence < 0.35


def test_ambiguous_post_gets_lower_confidence_than_unambiguous_one():
    mixed = classify("@cloudnest thanks, but the sync is still broken?")
    clear = classify(COMPLAINTS[0])
    assert mixed.intent_confidence < clear.intent_confidence


# --------------------------------------------------------------------------------------------
# Sentiment
# --------------------------------------------------------------------------------------------


def test_negation_flips_polarity():
    assert classify("The new menu is not bad").sentiment == "positive"
    assert classify("The new menu is not good").sentiment == "negative"
    assert classify("The new menu is good").sentiment_score > classify("The new menu is not bad").sentiment_score


def test_intensifiers_caps_and_exclamation_raise_intensity():
    plain = classify("The support team was good").sentiment_score
    assert classify("The support team was really good").sentiment_score > plain
    assert classify("The support team was GOOD").sentiment_score > plain
    assert classify("The support team was good!!").sentiment_score > plain


def test_but_clause_weighs_more():
    c = classify("The room was lovely but the staff were rude and unhelpful")
    assert c.sentiment == "negative"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("parcel just arrived 😡", "negative"),
        ("parcel just arrived 🙏❤️", "positive"),
        ("parcel just arrived :(", "negative"),
        ("parcel just arrived :)", "positive"),
        ("smh, the app logged me out again", "negative"),
        ("thx for sorting it out so fast, lol", "positive"),
        ("ugh wtf is going on with the trains", "negative"),
    ],
)
def test_emoji_emoticons_and_slang(text, expected):
    assert classify(text).sentiment == expected


def test_mentions_urls_and_hashtags_are_normalised():
    with_noise = classify("@someone @other check https://example.com/x?y=1 #LoveIt")
    assert with_noise.sentiment == "positive"  # hashtag word "love" kept, camel case split
    assert classify("#NeverAgain @skylark_air").intent == "complaint"


def test_neutral_statement():
    c = classify("The store opens at nine on weekdays")
    assert c.sentiment == "neutral"
    assert c.sentiment_score == 0.0


# --------------------------------------------------------------------------------------------
# Hostile input
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("text", ["", "   ", "\n\t  \r\n", "\x00\x00\x00"])
def test_empty_whitespace_and_null_bytes(text):
    c = classify(text)
    assert c.intent == "other"
    assert c.language == "und"
    assert c.private_data == ()


def test_huge_emoji_string_is_cut_and_classified():
    c = classify("😡" * 100_000)  # 100 KB+ of emoji
    assert c.sentiment == "negative"
    assert find_private_data("😡" * 100_000) == ()


def test_markup_and_script_tags_do_not_break_anything():
    c = classify("<script>alert('refund')</script>" + "<div>" * 20_000 + "\x00 hello")
    assert c.intent in INTENTS
    c2 = classify("<b>thanks</b> <i>so much</i> <script>document.cookie</script>")
    assert c2.sentiment == "positive"


def test_long_input_only_first_max_text_characters_count():
    tail = " my card is 4111 1111 1111 1111"
    assert find_private_data("x" * (MAX_TEXT - 50) + tail) == ("card_number",)
    assert find_private_data("x" * MAX_TEXT + tail) == ()
    assert classify("x " * 10_000 + "lawyer lawsuit").intent != "legal_threat"


def test_odd_unicode_and_control_characters():
    for text in ["\u202e\u200b\ufeff", "ＡＢＣ！？", "a\u0301" * 500, "\ud7ff\ue000", "💩" * 3 + "\x07"]:
        c = classify(text)
        assert c.intent in INTENTS


# --------------------------------------------------------------------------------------------
# Language
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "lang"),
    [
        ("Where is my order? It has been two weeks and nobody has answered", "en"),
        ("¿Dónde está mi pedido? Llevo dos semanas esperando y nadie me responde", "es"),
        ("Bonjour, ma commande n'est toujours pas arrivée, pourquoi ?", "fr"),
        ("Meine Bestellung ist immer noch nicht da, warum dauert das so lange?", "de"),
        ("Olá, o meu pedido ainda não chegou, vocês podem ajudar?", "pt"),
        ("Ciao, il mio ordine non è ancora arrivato, perché?", "it"),
        ("Mijn bestelling is nog steeds niet aangekomen, waarom duurt het zo lang?", "nl"),
    ],
)
def test_language_of_short_sentences(text, lang):
    code, conf = detect_language(text)
    assert code == lang
    assert conf >= 0.4
    assert classify(text).language == lang


@pytest.mark.parametrize("text", ["ok", "👍👍", "lol", "@acme", "12345", ""])
def test_too_little_text_is_undetermined(text):
    code, conf = detect_language(text)
    assert code == "und"
    assert conf <= 0.2


def test_non_latin_script():
    assert detect_language("Мой заказ до сих пор не пришёл")[0] == "ru"
    assert detect_language("注文した商品がまだ届きません")[0] == "ja"


# --------------------------------------------------------------------------------------------
# Private data
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "kind"),
    [
        ("you can reach me at jo.smith+shop@mailbox.example.org", "email"),
        ("call me back on +44 20 7946 0321 please", "phone"),
        ("my number is (415) 555-0172", "phone"),
        ("ring 415-555-0172 after 5", "phone"),
        ("mobile 06 12 34 56 78", "phone"),
        ("card 4111 1111 1111 1111 was charged twice", "card_number"),
        ("card 5500-0000-0000-0004 declined", "card_number"),
        ("my account number is 12345678", "account_number"),
        ("acct# 99812345 still locked", "account_number"),
        ("order #A1B2C3D4 never arrived", "order_number"),
        ("booking reference: QX7R2P9 was cancelled", "order_number"),
        ("confirmation number 7781234 please check", "order_number"),
        ("please send it to 221B Baker Street instead", "street_address"),
        ("we live at 1600 Pennsylvania Ave NW", "street_address"),
        ("deliver to 12 main street, springfield", "street_address"),
        ("livrez au 12 rue de la Paix, merci", "street_address"),
        ("die Adresse ist Hauptstraße 5 in Berlin", "street_address"),
        ("calle Mayor 5, Madrid", "street_address"),
    ],
)
def test_private_data_kinds(text, kind):
    assert kind in find_private_data(text)
    assert kind in classify(text).private_data


def test_luhn_invalid_card_number_is_not_flagged():
    assert "card_number" not in find_private_data("card 4111 1111 1111 1112 was charged twice")
    assert "card_number" not in find_private_data("4111111111111112")


def test_no_false_private_data():
    for text in [
        "@acme great product, 10/10 would recommend",
        "@mastodon_user@social.example thanks for the tip",
        "Flight AC123 leaves at 10:45 on 2024-05-17",
        "pi is 3.14159265358979",
        "my order is late again",
        "I waited 3 hours down the street for the bus",
        "2 days on the road and still no parcel",
        "flight 123 on the way to Main Street Station",
        "",
    ]:
        assert find_private_data(text) == (), text


def test_several_kinds_in_fixed_order():
    text = "acct 87654321, card 4111-1111-1111-1111, mail a@b.example, +1 212 555 0100"
    assert find_private_data(text) == ("email", "phone", "card_number", "account_number")


# --------------------------------------------------------------------------------------------
# The taxonomy: several labels at once, each with a confidence
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "label"),
    [
        ("@acme my parcel never arrived and nobody answers, terrible service", "complaint"),
        ("@acme how do I reset my password?", "question"),
        ("@acme thank you so much, your team was amazing today", "praise"),
        ("@acme how much is the premium plan? I want to buy it for my business", "sales_lead"),
        ("@acme I am taking legal action, my lawyer will contact you", "legal_threat"),
        ("@acme please add a dark mode to the app, it would be great", "feature_request"),
        ("@acme is the site down? not loading for anyone else", "outage"),
        ("@acme your staff member at the store was so rude to me", "employee"),
        ("@acme are you hiring? I would love a job in your careers team", "employee"),
        ("Hi @acme, I'm a journalist working on a story, request for comment", "press"),
        ("free followers!! follow back, click here http://a.example http://b.example http://c.example", "spam"),
    ],
)
def test_taxonomy_labels(text, label):
    c = classify(text)
    found = dict(c.labels)
    assert label in found, (text, c.labels)
    assert 0 < found[label] <= 1
    assert all(name in LABELS for name in found)


def test_labels_are_multi_label_and_include_the_main_intent():
    c = classify("@acme your app is down again and I can't log in, this is a disgrace")
    found = dict(c.labels)
    assert {"complaint", "outage"} <= set(found)
    assert c.intent == "complaint" and found["complaint"] == c.intent_confidence
    confidences = [conf for _, conf in c.labels]
    assert confidences == sorted(confidences, reverse=True)


def test_no_labels_without_evidence():
    assert classify("").labels == ()
    assert classify("ok").labels == ()
    assert "spam" not in dict(classify("@acme my order #12345678 never came http://example.com/track").labels)


@pytest.mark.parametrize(
    "text",
    [
        "😡" * 100_000,
        "<div>" * 25_000,
        "<a href='" * 15_000,
        "(" * 100_000,
        "1 " * 50_000 + "Street",
        "12 " + "Main " * 30_000 + "Street",
        "rue " * 30_000 + "5",
        "follow back " * 10_000,
        "http://x " * 20_000,
    ],
)
def test_hostile_input_is_cut_before_any_pattern(text):
    # Only the first MAX_TEXT characters are read: the same answer as for the cut text.
    assert len(text) > MAX_TEXT
    c = classify(text)
    assert c == classify(text[:MAX_TEXT])
    assert all(name in LABELS for name, _ in c.labels)
    assert find_private_data(text) == find_private_data(text[:MAX_TEXT])
