import random
import re
import unicodedata

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hubbub.lib.query import (
    _COMPOSES_WITH_PREVIOUS,
    MAX_TEXT,
    And,
    Document,
    Field,
    Near,
    Not,
    Or,
    Phrase,
    QuerySet,
    QuerySyntaxError,
    Term,
    Untranslatable,
    Wildcard,
    _is_word_char,
    normalise,
    parse,
    to_network_rule,
    words,
)


def matches(query: str, doc: Document) -> bool:
    return bool(QuerySet({0: query}).match(doc))


def hit(query, text, **fields):
    return matches(query, Document(text, **fields))


# --- Operators -------------------------------------------------------------------------------


def test_a_term_matches_whole_words_case_insensitively():
    assert hit("acme", "I love ACME!")
    assert hit("ACME", "acme's support")
    assert not hit("acme", "acmeco is different")
    assert not hit("acme", "the pacmen")


def test_and_or_not_and_minus():
    assert hit("acme AND refund", "refund from acme")
    assert not hit("acme AND refund", "acme only")
    assert hit("acme OR globex", "globex here")
    assert not hit("acme OR globex", "initech here")
    assert hit("acme NOT job", "acme is great")
    assert not hit("acme NOT job", "acme job offer")
    assert not hit("acme -job", "acme job offer")
    assert not hit('acme -"job offer"', "acme: job, offer")
    assert hit('acme -"job offer"', "acme offer job")
    assert not hit("acme -(job OR hiring)", "acme is hiring")
    assert hit("acme -(job OR hiring)", "acme is firing")


def test_adjacent_terms_are_and():
    assert parse("acme refund") == parse("acme AND refund")
    assert hit("acme refund", "a refund from acme")
    assert not hit("acme refund", "acme")


def test_precedence_not_near_and_or():
    # OR is loosest: a AND b OR c == (a AND b) OR c
    assert parse("a AND b OR c") == Or((And((Term("a", 0), Term("b", 6))), Term("c", 11)))
    assert hit("a AND b OR c", "c")
    assert not hit("a AND b OR c", "a")
    # NOT binds tighter than AND: a AND NOT b OR c == (a AND (NOT b)) OR c
    assert parse("a NOT b OR c") == Or((And((Term("a", 0), Not(Term("b", 6), 2))), Term("c", 11)))
    # NEAR binds tighter than AND and OR.
    assert parse("x a NEAR/2 b OR c") == Or(
        (And((Term("x", 0), Near(Term("a", 2), Term("b", 11), 2, 4))), Term("c", 16))
    )
    assert hit("(a OR b) c", "b c")
    assert not hit("a OR b c", "b")


def test_phrases_ignore_punctuation_between_words_but_keep_order():
    assert hit('"money back"', "I want my MONEY... back!")
    assert hit('"money back"', "money-back guarantee")
    assert not hit('"money back"', "back money")
    assert not hit('"money back"', "money and back")
    assert hit("money-back", "money back")
    assert hit("don't", "I don’t like it")  # any punctuation separates words, typographic too
    assert hit("don't", "I don't like it")


def test_near_either_order_up_to_the_limit():
    assert hit("refund NEAR/2 late", "refund was very late")
    assert hit("refund NEAR/2 late", "late, very late refund")
    assert hit("refund NEAR/2 late", "late was very refund")
    assert not hit("refund NEAR/2 late", "refund was very very late")
    assert not hit("refund NEAR/2 late", "late was very very refund")
    assert hit("refund NEAR/0 late", "late refund")
    assert not hit("refund NEAR/0 late", "late, a refund")
    assert hit('"money back" NEAR/1 acme', "money back from acme")
    assert hit('acme NEAR/1 "money back"', "money back from acme")
    assert not hit('"money back" NEAR/0 acme', "money back from acme")
    assert hit("refund* NEAR/1 acme", "acme the refunds")


def test_near_needs_two_different_occurrences():
    assert not hit("refund NEAR/3 refund", "refund")
    assert hit("refund NEAR/3 refund", "refund, refund")
    assert not hit('"a b" NEAR/3 b', "a b")
    assert hit('"a b" NEAR/3 b', "a b b")


def test_wildcards_match_word_prefixes():
    assert hit("refund*", "Refunded yesterday")
    assert hit("refund*", "refund")
    assert not hit("refund*", "nonrefundable")
    assert hit("straß*", "STRASSENBAHN kaputt")


# --- Fields ----------------------------------------------------------------------------------


def test_author_is_the_handle_with_optional_at():
    assert hit("author:acmehelp", "x", author="@AcmeHelp")
    assert hit("author:@acmehelp", "x", author="acmehelp")
    assert not hit("author:acme", "x", author="acmehelp")


def test_lang_matches_the_language_and_its_regional_variants():
    assert hit("acme lang:en", "acme", lang="en")
    assert hit("acme lang:en", "acme", lang="en-GB")
    assert hit("acme lang:EN", "acme", lang="en_gb")
    assert not hit("acme lang:en", "acme", lang="de")
    assert not hit("acme lang:en-us", "acme", lang="en-gb")


def test_channel():
    assert hit("acme channel:mastodon", "acme", channel="Mastodon")
    assert not hit("acme channel:mastodon", "acme", channel="reddit")


def test_url_matches_domain_subdomains_and_path_prefix():
    assert hit("url:example.com", "", url="https://example.com/a")
    assert hit("url:example.com", "", url="http://support.Example.com:8080/a?b")
    assert not hit("url:example.com", "", url="https://badexample.com/")
    assert not hit("url:example.com", "", url="https://example.com.evil.net/")
    assert hit("url:https://example.com/help", "", url="https://www.example.com/help/123")
    assert not hit("url:example.com/help", "", url="https://example.com/shop")
    assert not hit("url:example.com", "")


def test_fields_combine_with_terms():
    assert hit("refund (author:bob OR channel:reddit)", "refund please", channel="reddit")
    assert not hit("refund (author:bob OR channel:reddit)", "refund please", channel="rss")


# --- Unicode ---------------------------------------------------------------------------------


def test_unicode_words():
    assert hit("café", "Le CAFÉ est fermé")
    assert hit("café", "le cafe\u0301 est fermé")  # decomposed é
    assert not hit("caf", "café")
    assert hit("straße", "STRASSE gesperrt")
    assert hit("strasse", "Straße gesperrt")
    assert hit("acme", "love🔥acme🔥!")
    assert hit('"love acme"', "love🔥acme")
    assert hit("Ünïcödé", "ünïcödé")
    assert hit("#acmefail", "so #AcmeFail today")


def test_unicode_word_boundaries_keep_combining_marks_and_drop_emoji_selectors():
    assert hit("नमस्ते", "नमस्ते दुनिया")  # vowel signs and virama are part of the word
    assert not hit("नमस", "नमस्ते दुनिया")
    assert hit("istanbul", "İSTANBUL'da") and hit("İstanbul", "istanbul")
    assert hit('"love acme"', "love ❤️ acme")  # the emoji's variation selector is not a word
    assert words("a\ud83db") == ["a", "b"]  # a lone surrogate from broken JSON separates words
    assert hit("acme", "ａｃｍｅ")  # full-width letters fold to plain ones


# --- Syntax errors ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("query", "position", "message"),
    [
        ("(acme OR globex", 0, "never closed"),
        ("acme OR (globex", 8, "never closed"),
        ("acme)", 4, "no ( to close"),
        ("acme ()", 5, "empty parentheses"),
        ("acme AND", 5, "AND needs a term after it"),
        ("acme OR", 5, "OR needs a term after it"),
        ("acme AND OR globex", 5, "AND needs a term after it"),
        ("OR acme", 0, "OR needs a term before it"),
        ("AND acme", 0, "AND needs a term before it"),
        ("(acme OR) x", 6, "OR needs a term after it"),
        ("acme NOT", 5, "NOT needs a term after it"),
        ('acme ""', 5, "empty phrase"),
        ('acme "!!"', 5, "empty phrase"),
        ('acme "refund', 5, "never closed"),
        ("acme NEAR refund", 5, "NEAR needs a distance"),
        ("acme NEAR/ refund", 5, "NEAR needs a distance"),
        ("acme NEAR/x refund", 5, "NEAR needs a distance"),
        ("acme NEAR/101 refund", 5, "at most 100"),
        ("acme NEAR/2", 5, "NEAR/2 needs a term after it"),
        ("acme NEAR/2 (a OR b)", 5, "NEAR joins two terms or phrases"),
        ("a NEAR/2 b NEAR/2 c", 11, "NEAR joins two terms or phrases"),
        ("-a NEAR/2 b", 3, "NEAR joins two terms or phrases"),
        ("acme foo:bar", 5, "unknown field 'foo'"),
        ("acme author:", 12, "author: needs a value"),
        ("acme re*", 5, "wildcard needs at least 3"),
        ("acme ref*und", 8, "* can only end a word"),
        ("acme *", 5, "* must follow a single word"),
        ("acme e-mai*", 10, "* must follow a single word"),
        ("acme !!!", 5, "needs letters or digits"),
        ("acme --spam", 5, "- needs a term"),
        ("-spam", 0, "would match posts without"),
        ("NOT spam", 0, "would match posts without"),
        ("acme OR -spam", 8, "would match posts without"),
        ("-spam -ham", 0, "would match posts without"),
        ("", 0, "empty"),
        ("   ", 0, "empty"),
    ],
)
def test_syntax_errors_point_at_the_mistake(query, position, message):
    with pytest.raises(QuerySyntaxError) as caught:
        parse(query)
    assert caught.value.position == position
    assert message in caught.value.message


def test_caret_renders_the_position():
    with pytest.raises(QuerySyntaxError) as caught:
        parse("acme AND\t(refund")
    assert caught.value.caret() == "acme AND (refund\n         ^"


def test_caret_shows_a_window_of_a_long_query():
    query = "a " * 150 + "(b"
    with pytest.raises(QuerySyntaxError) as caught:
        parse(query)
    line, marker = caught.value.caret(width=40).split("\n")
    assert line.startswith("…") and len(line) <= 42
    assert line[marker.index("^")] == "("


def test_negation_with_a_positive_part_is_fine():
    assert parse("acme -spam") == And((Term("acme", 0), Not(Term("spam", 6), 5)))
    assert parse("author:bob -spam") == And((Field("author", "bob", 0), Not(Term("spam", 12), 11)))


# --- Hostile input ---------------------------------------------------------------------------


def test_a_megabyte_post_is_cut_to_max_text():
    text = "acme " + "x" * 1_000_000 + " refund"
    assert hit("acme", text)
    assert not hit("refund", text)
    assert QuerySet({1: "acme", 2: "refund"}).match(Document(text)) == [1]
    many_words = "refund " * 200_000
    assert QuerySet({1: "refund NEAR/0 refund"}).match(Document(many_words)) == [1]
    assert len(words(many_words[:MAX_TEXT])) == MAX_TEXT // 7 + 1


def test_query_length_and_term_limits():
    assert parse("a" * 4000) == Term("a" * 4000, 0)
    with pytest.raises(QuerySyntaxError) as caught:
        parse("a" * 4001)
    assert caught.value.position == 4000
    parse(" ".join(["abc"] * 200))
    with pytest.raises(QuerySyntaxError) as caught:
        parse(" ".join(["abc"] * 201))
    assert caught.value.position == 800 and "200 terms" in caught.value.message


def test_deep_nesting_is_an_error_not_a_recursion_error():
    assert parse("(" * 50 + "acme" + ")" * 50) == Term("acme", 50)
    with pytest.raises(QuerySyntaxError) as caught:
        parse("(" * 51 + "acme" + ")" * 51)
    assert caught.value.position == 50
    with pytest.raises(QuerySyntaxError):
        parse("(" * 2000 + "acme" + ")" * 2000)
    with pytest.raises(QuerySyntaxError):
        parse("acme " + "NOT " * 900 + "spam")
    with pytest.raises(QuerySyntaxError):
        parse("acme " + "-(" * 900 + "spam" + ")" * 900)


def test_regex_metacharacters_are_literal():
    assert hit("acm.", "acm!") and not hit("acm.", "acme")
    assert not hit('"a.c"', "abc")
    assert hit('"(a+)+$"', "a")
    assert not hit('"(a+)+$"', "aaaa")
    assert not hit("[abc]", "b")
    assert hit("[abc]", "abc")
    assert not hit("x{1000}", "xxxx")
    assert hit("acme?", "acme")
    with pytest.raises(QuerySyntaxError):
        parse(".*")
    assert hit('"' + "a" * 30 + '"', "a" * 30 + "!")  # no catastrophic backtracking to wait for


# --- QuerySet --------------------------------------------------------------------------------


def test_queryset_matches_and_sorts_ids():
    queries = {
        5: "acme refund*",
        3: "author:@Bob",
        9: "url:example.com",
        1: '"money back" NEAR/2 acme',
        2: "globex",
        7: "lang:de acme",
    }
    doc = Document("ACME refunds? Money-back from acme", author="bob", lang="de-AT", url="http://www.example.com/a")
    assert QuerySet(queries).match(doc) == [1, 3, 5, 7, 9]
    assert QuerySet({}).match(doc) == []


def test_queryset_error_names_the_query():
    with pytest.raises(QuerySyntaxError) as caught:
        QuerySet({1: "acme", 42: "acme AND"})
    assert caught.value.query_id == 42 and caught.value.position == 5
    assert str(caught.value).startswith("query 42: AND needs a term after it")
    assert caught.value.caret() == "acme AND\n     ^"


def test_replace_and_remove():
    queries = QuerySet({1: "acme", 2: "acme refund"})
    doc = Document("acme refund")
    assert queries.match(doc) == [1, 2]
    queries.replace(1, "globex")
    assert queries.match(doc) == [2]
    assert queries.match(Document("globex")) == [1]
    queries.replace(3, "refund")
    assert queries.match(doc) == [2, 3]
    queries.remove(2)
    queries.remove(2)  # removing twice is harmless
    assert queries.match(doc) == [3]
    assert " acme " not in set(queries.keys())
    with pytest.raises(QuerySyntaxError):
        queries.replace(3, "(refund")
    assert queries.match(doc) == [3]  # a bad edit leaves the set unchanged
    queries.remove(1)
    queries.remove(3)
    assert len(queries) == 0 and queries.match(doc) == []
    queries.replace(4, "author:bob")
    assert queries.match(Document("", author="bob")) == [4]


# --- Property check: the set, the single query and a brute-force reference agree ------------

VOCAB = ["acme", "refund", "refunds", "late", "money", "back", "café", "straße", "app", "crash", "ok", "ünï"]
AUTHORS = ["bob", "alice", ""]
LANGS = ["en", "en-gb", "de", ""]
CHANNELS = ["mastodon", "reddit", ""]
URLS = ["https://example.com/help/1", "http://shop.example.com/", "https://other.org/x", ""]


def reference(trees: dict, doc: Document) -> list[int]:
    """A slow, obviously-correct evaluation of each tree over the post's word list."""
    tokens = words(doc.text[:MAX_TEXT])
    return sorted(i for i, tree in trees.items() if _ref(tree, tokens, doc))


def _spans(leaf, tokens):
    if isinstance(leaf, Term):
        return [(i, i) for i, t in enumerate(tokens) if t == leaf.word]
    if isinstance(leaf, Wildcard):
        return [(i, i) for i, t in enumerate(tokens) if t.startswith(leaf.prefix)]
    k = len(leaf.words)
    return [(i, i + k - 1) for i in range(len(tokens)) if tuple(tokens[i : i + k]) == leaf.words]


def _ref(node, tokens, doc):
    if isinstance(node, Term | Wildcard | Phrase):
        return bool(_spans(node, tokens))
    if isinstance(node, Not):
        return not _ref(node.child, tokens, doc)
    if isinstance(node, And):
        return all(_ref(c, tokens, doc) for c in node.children)
    if isinstance(node, Or):
        return any(_ref(c, tokens, doc) for c in node.children)
    if isinstance(node, Near):
        for s1, e1 in _spans(node.left, tokens):
            for s2, e2 in _spans(node.right, tokens):
                gap = s2 - e1 - 1 if s2 > e1 else s1 - e2 - 1 if s1 > e2 else None
                if gap is not None and gap <= node.distance:
                    return True
        return False
    assert isinstance(node, Field)
    if node.name == "author":
        return doc.author.lower().lstrip("@") == node.value
    if node.name == "lang":
        return doc.lang == node.value or doc.lang.startswith(node.value + "-")
    if node.name == "channel":
        return doc.channel == node.value
    host, _, path = node.value.partition("/")
    rest = doc.url.split("://", 1)[-1]
    doc_host, _, doc_path = rest.partition("/")
    return (doc_host == host or doc_host.endswith("." + host)) and doc_path.startswith(path)


def random_query(rng: random.Random, depth: int = 0) -> str:
    roll = rng.random()
    if depth > 2 or roll < 0.35:
        return random_leaf(rng)
    if roll < 0.45:
        return f"{random_word_leaf(rng)} NEAR/{rng.randint(0, 3)} {random_word_leaf(rng)}"
    if roll < 0.55:
        return "-" + random_leaf(rng)
    if roll < 0.6:
        return f"NOT ({random_query(rng, depth + 1)})"
    parts = [random_query(rng, depth + 1) for _ in range(rng.randint(2, 3))]
    joiner = rng.choice([" AND ", " OR ", " "])
    return "(" + joiner.join(parts) + ")"


def random_word_leaf(rng: random.Random) -> str:
    roll = rng.random()
    if roll < 0.2:
        return f'"{rng.choice(VOCAB)} {rng.choice(VOCAB)}"'
    if roll < 0.35:
        return rng.choice(["ref*", "refund*", "str*", "caf*", "mon*"]).replace("ref*", "refu*")
    word = rng.choice(VOCAB)
    return word.upper() if rng.random() < 0.1 else word


def random_leaf(rng: random.Random) -> str:
    if rng.random() < 0.2:
        field = rng.choice(["author", "lang", "channel", "url"])
        value = {
            "author": rng.choice(["bob", "@alice"]),
            "lang": rng.choice(["en", "de", "en-gb"]),
            "channel": rng.choice(["mastodon", "reddit"]),
            "url": rng.choice(["example.com", "example.com/help", "other.org"]),
        }[field]
        return f"{field}:{value}"
    return random_word_leaf(rng)


def random_doc(rng: random.Random) -> Document:
    pieces = []
    for _ in range(rng.randint(0, 12)):
        word = rng.choice(VOCAB + ["x", "🔥"])
        word = word.upper() if rng.random() < 0.1 else word
        pieces.append(word + rng.choice([" ", " ", ", ", "! ", "-", "🔥", "…"]))
    return Document(
        "".join(pieces),
        author=rng.choice(AUTHORS),
        lang=rng.choice(LANGS),
        channel=rng.choice(CHANNELS),
        url=rng.choice(URLS),
    )


def test_queryset_agrees_with_single_queries_and_the_reference():
    rng = random.Random(20240607)
    queries: dict[int, str] = {}
    while len(queries) < 300:
        text = random_query(rng)
        try:
            parse(text)
        except QuerySyntaxError:
            continue
        queries[len(queries)] = text
    docs = [random_doc(rng) for _ in range(250)]
    query_set = QuerySet(queries)
    trees = {i: parse(text) for i, text in queries.items()}
    matched_somewhere = 0
    for doc in docs:
        expected = reference(trees, doc)
        assert query_set.match(doc) == expected, doc
        assert [i for i, text in queries.items() if matches(text, doc)] == expected
        matched_somewhere += bool(expected)
    assert matched_somewhere > 150  # the corpus exercises matching, not only non-matching

    # Edits keep the set equal to a freshly built one.
    for _ in range(100):
        query_id = rng.randrange(350)
        if rng.random() < 0.3:
            query_set.remove(query_id)
            queries.pop(query_id, None)
        else:
            text = random_query(rng)
            try:
                query_set.replace(query_id, text)
            except QuerySyntaxError:
                continue
            queries[query_id] = text
    fresh = QuerySet(queries)
    trees = {i: parse(text) for i, text in queries.items()}
    for doc in docs:
        assert query_set.match(doc) == fresh.match(doc)
        assert query_set.match(doc) == reference(trees, doc)


# --- Translation to a network's search syntax -------------------------------------------------


@pytest.mark.parametrize(
    ("query", "rule"),
    [
        ("acme refund", "acme refund"),
        ('acme OR "acme corp"', '(acme OR "acme corp")'),
        ("acme -job", "acme -job"),
        ('acme -"job offer"', 'acme -"job offer"'),
        ("acme -(job OR hiring)", "acme -(job OR hiring)"),
        ("acme NOT (job hiring)", "acme -(job hiring)"),
        ("author:@AcmeHelp", "from:acmehelp"),
        ("acme lang:en", "acme lang:en"),
        ("url:https://www.Acme.com/help acme", 'url:"www.acme.com/help" acme'),
        ("(a b) OR c", "((a b) OR c)"),
        ("acme channel:twitter", "acme"),
        ("acme NOT -job", "acme job"),
        ("acme (channel:twitter OR channel:mastodon)", "acme"),
    ],
)
def test_x_rules_say_exactly_what_x_can(query, rule):
    assert to_network_rule(query, "twitter") == rule


@pytest.mark.parametrize(
    ("query", "rule"),
    [
        # X has no proximity or wildcard operator for streams: widened, the matcher narrows again.
        ("acme NEAR/3 refund", "acme refund"),
        ("acme refund*", "acme"),
        ("(acme OR refund*) late", "late"),
        ("acme lang:en-gb", "acme lang:en"),
        # A negation of something widened would drop posts the query wants: the negation goes.
        ("acme -refund*", "acme"),
        ("acme -(late NEAR/2 refund)", "acme"),
        ("acme -(late lang:en-gb)", "acme"),
        ("acme author:not-an-x-handle", "acme"),
    ],
)
def test_x_rules_widen_what_x_cannot_say(query, rule):
    assert to_network_rule(query, "twitter") == rule


@pytest.mark.parametrize(
    ("query", "reason"),
    [
        ("refund*", "X needs a word"),
        ("lang:en refund*", "X needs a word"),
        ("acme channel:mastodon", "never match"),
        ("acme OR refund*", "X needs a word"),
        (" ".join(f"word{i}" for i in range(150)), "characters"),
    ],
)
def test_x_refuses_what_it_cannot_filter(query, reason):
    with pytest.raises(Untranslatable) as caught:
        to_network_rule(query, "twitter")
    assert reason in str(caught.value)


def test_keyword_search_is_the_words_every_match_needs():
    assert to_network_rule('acme "money back"', "mastodon") == '"money back" acme'
    assert to_network_rule("(acme refund) OR (acme late)", "bluesky") == "acme"
    assert to_network_rule("acme NEAR/2 refund -job lang:en", "bluesky") == "acme refund"
    assert to_network_rule("acme channel:bluesky", "bluesky") == "acme"
    with pytest.raises(Untranslatable):
        to_network_rule("acme OR globex", "mastodon")
    with pytest.raises(Untranslatable):
        to_network_rule("acme channel:twitter", "bluesky")
    with pytest.raises(Untranslatable):
        to_network_rule("author:bob", "mastodon")
    with pytest.raises(QuerySyntaxError):
        to_network_rule("acme AND", "twitter")


def _x_reference(rule: str, doc: Document) -> bool:
    """Evaluate an X rule we generated, by turning it back into our own syntax."""
    ours = re.sub(r'url:"([^"]*)"', r"url:\1", rule.replace("from:", "author:"))
    return matches(ours, doc)


def test_translations_are_supersets_of_the_query():
    # Every post the query matches must pass the network's filter, or the stream never brings it.
    rng = random.Random(99)
    checked = 0
    for _ in range(400):
        text = random_query(rng)
        try:
            parse(text)
        except QuerySyntaxError:
            continue
        docs = [random_doc(rng) for _ in range(40)]
        for network in ("twitter", "bluesky"):
            try:
                rule = to_network_rule(text, network)
            except Untranslatable:
                continue
            for doc in docs:
                if not matches(text, doc):
                    continue
                checked += 1
                doc_on_network = Document(doc.text, doc.author, doc.lang, network, doc.url)
                if network == "twitter":
                    # X tags a post with a bare language code.
                    doc_on_network = Document(doc.text, doc.author, doc.lang.split("-")[0], network, doc.url)
                    if matches(text, Document(doc.text, doc.author, doc.lang, network, doc.url)):
                        assert _x_reference(rule, doc_on_network), (text, rule, doc)
                elif matches(text, doc_on_network):
                    assert all(matches(word, doc) for word in re.findall(r'"[^"]+"|\S+', rule)), (text, rule)
    assert checked > 200


# --- normalise() against a slow, obviously-correct reference ----------------------------------


def reference_normalise(text: str) -> str:
    text = unicodedata.normalize("NFKC", text)
    folded = text.casefold().replace("i\u0307", "i")
    kept = "".join(c if c.isascii() and c.isalnum() or not c.isascii() and _is_word_char(c) else " " for c in folded)
    return f" {' '.join(kept.split())} "


TRICKY = (
    [chr(c) for c in range(32, 127)]
    + list("\u00a0\u00df\u0130\u0131\u0307\u0301\u0345\u03a3\u03c2\ufe0f\u200d\u200b\u2764\u3000\x85\x1c\t\n")
    + list("\ufb01\u01c4\u01c5\u2160\u24b6\uff21\ud800\udfff\u0915\u094d\u0e01\u0e48\u1e9e\u212a\U0001f525\U000e0100")
)


def test_normalise_agrees_with_the_reference_on_hostile_unicode():
    rng = random.Random(5)
    for _ in range(3000):
        pool = TRICKY if rng.random() < 0.7 else [chr(rng.randrange(0x80, 0x30000)) for _ in range(20)]
        text = "".join(rng.choice(pool) for _ in range(rng.randint(0, 40)))
        if rng.random() < 0.3:
            text = text.upper()
        assert normalise(text) == reference_normalise(text), repr(text)
    for text in ["İSTANBUL'da", "I\u0307stanbul", "cafe\u0301", "ΣΊΣΥΦΟΣ σίσυφος", "ǅemal ǄEMAL", "Ⅻ ⓐⒶ", "ﬁne"]:
        assert normalise(text) == reference_normalise(text), text


# Compatibility characters (NFKC maps them to other characters) mixed with marks that compose
# with a neighbour: "ｅ" + U+0301 is "é", U+1100 U+1161 U+11A8 is "각", U+0B47 + U+0B3E is "ୋ".
COMPAT = list(
    "…ｅＡﬁ①²½™㎏ℌ\u0301\u0308\u0327\u0345\u3099\u309aかカｶﾞ\u1100\u1161\u11a8\u0b47\u0b3e\u212bAe \u2028.-"
) + ["\U0001d400", "\u2460", "\U0001f525", "\ufe0f", "İ", "\u0307"]


def test_characters_that_compose_with_a_neighbour_agree_with_the_reference():
    rng = random.Random(11)
    for _ in range(3000):
        text = "".join(rng.choice(COMPAT) for _ in range(rng.randint(1, 30)))
        assert normalise(text) == reference_normalise(text), repr(text)
    for text in ["ｅ\u0301", "…\u0301", "ﬁ\u0301", "\u1100\u1161\u11a8", "\u0b47\u0b3e", "ｶﾞ", "e…\u0301x"]:
        assert normalise(text) == reference_normalise(text), repr(text)
    assert hit("café", "ｃａｆｅ\u0301…")  # full-width letters and a decomposed accent, cheaply or not
    assert hit('"money back"', "money…back")


def test_long_runs_of_separators_and_many_distinct_characters():
    separators = "🔥…" * 2000 + "acme" + " \u00a0!" * 2000
    assert normalise(separators) == " acme "
    assert QuerySet({1: "acme", 2: '"acme acme"'}).match(Document(separators)) == [1]
    # Thousands of distinct characters in one post: each is folded once, and the cache stays bounded.
    rare = "".join(chr(c) for c in range(0x4E00, 0x4E00 + MAX_TEXT))
    assert normalise(rare) == reference_normalise(rare)
    assert QuerySet({1: f"{rare[:3]} acme", 2: rare[3:6]}).match(Document(f"{rare[:3]}, ACME!")) == [1]
    # Thousands of distinct separators, and of characters NFKC changes: folded one by one, not a pass each.
    symbols = "".join(chr(c) for c in range(0x2000, 0x10000) if not chr(c).isalnum() and not _is_word_char(chr(c)))
    compat = "".join(chr(c) for c in range(0x80, 0x30000) if unicodedata.normalize("NFKC", chr(c)) != chr(c))
    for text in (symbols[:MAX_TEXT], compat[:MAX_TEXT], symbols[:3000] + compat[:2000]):
        assert normalise(text) == reference_normalise(text)
        assert QuerySet({1: "acme"}).match(Document(text[:4000] + " ACME")) == [1]


def test_the_list_of_characters_composing_with_the_previous_one_is_unicodes():
    # Characters of combining class 0 that are the second of a canonical pair: a post holding one
    # is put in NFKC whole. If Python's Unicode version adds one, this says which.
    second = set()
    for code in range(0x110000):
        decomposition = unicodedata.decomposition(chr(code))
        if decomposition and not decomposition.startswith("<") and len(decomposition.split()) == 2:
            second.add(chr(int(decomposition.split()[1], 16)))
    assert {c for c in second if not unicodedata.combining(c)} == _COMPOSES_WITH_PREVIOUS


@pytest.mark.parametrize(
    ("query", "text"),
    [
        ("acme", "ＡＣＭＥ rocks"),
        ("café", "CAFE\u0301!"),
        ("istanbul", "İSTANBUL'da"),
        ("fine", "ﬁne…"),
        ("kelvin", "\u212aELVIN"),
        ('"money back"', "MONEY🔥…BACK"),
        ('"no reply" acme', "acme: no… reply"),
        ("strass*", "STRAẞENBAHN"),
        ("author:bob OR acme", "nothing here"),
    ],
)
def test_posts_in_awkward_unicode_match(query, text):
    doc = Document(text, author="Bob")
    assert matches(query, doc)
    assert QuerySet({1: query, 2: "unrelated"}).match(doc) == [1]


def test_edits_take_effect_and_give_back_their_keys():
    queries = QuerySet({1: '"acme router"', 2: "acme refund"})
    empty = QuerySet({9: "unrelated"})._matcher.sizes()
    assert queries.match(Document("acme ROUTER")) == [1]
    queries.replace(1, "globex")
    queries.replace(2, "globex")
    assert queries.match(Document("acme router refund")) == []
    assert queries.match(Document("Globex!")) == [1, 2]
    queries.remove(1)
    queries.remove(2)
    assert queries.match(Document("globex")) == []
    assert queries._matcher.sizes() == {"keys": 0, "queries": 0, "words": 0, "prefixes": 0}
    queries.replace(3, "lang:de refund")
    assert queries.match(Document("refund", lang="de")) == [3]
    assert queries.keys() == [" refund "]
    assert empty == {"keys": 1, "queries": 1, "words": 1, "prefixes": 0}


def test_a_thousand_edits_leave_nothing_behind():
    rng = random.Random(3)
    queries = QuerySet()
    texts = [random_query(rng) for _ in range(400)]
    texts = [t for t in texts if _parses(t)]
    for _ in range(1000):
        query_id = rng.randrange(50)
        if rng.random() < 0.3:
            queries.remove(query_id)
        else:
            queries.replace(query_id, rng.choice(texts))
    for query_id in range(50):
        queries.remove(query_id)
    assert queries._matcher.sizes() == {"keys": 0, "queries": 0, "words": 0, "prefixes": 0}
    assert queries.keys() == []
    queries.replace(1, 'acme* NEAR/2 "money back"')
    assert queries.match(Document("ACMEs want their money back")) == [1]


def _parses(text: str) -> bool:
    try:
        parse(text)
    except QuerySyntaxError:
        return False
    return True


def test_the_c_matcher_refuses_malformed_programs_and_keys():
    from hubbub.lib._match import Matcher

    matcher = Matcher(lambda doc: ("", "", "", "", "/"), MAX_TEXT)
    bad = [
        [],
        [("key", "no leading space ")],
        [("key", " two  spaces ")],
        [("key", " ")],
        [("key", " ab cd")],  # a prefix is one word
        [("not", 0)],  # a child must come before its parent
        [("key", " a "), ("and", (0, 5))],
        [("key", " a "), ("near", 0, 0)],
        [("key", " a "), ("not", -1)],
        [("key", " a "), ("frobnicate", 0)],
        [("url", "acme.com")],
        ["key"],
    ]
    for program in bad:
        with pytest.raises(ValueError):
            matcher.set_query(1, program, [])
    with pytest.raises(TypeError):
        matcher.set_query(1, [("key", 5)], [])
    with pytest.raises(TypeError):
        matcher.match(b"bytes", None, None)
    # Nothing half-built stayed behind, and the matcher still works.
    assert matcher.sizes() == {"keys": 0, "queries": 0, "words": 0, "prefixes": 0}
    matcher.set_query(7, [("key", " a "), ("key", " b c "), ("and", (0, 1))], [" a "])
    assert matcher.match("A, b… c!", None, None) == [7]


def test_a_field_query_asks_for_the_posts_fields_once():
    from hubbub.lib._match import Matcher

    asked = []

    def prepare(doc):
        asked.append(doc)
        return ("bob", "de-at", "mastodon", "support.acme.com", "/help/1")

    matcher = Matcher(prepare, MAX_TEXT)
    matcher.set_query(1, [("key", " acme "), ("author", "bob"), ("and", (0, 1))], [" acme "])
    matcher.set_query(
        2, [("key", " acme "), ("lang", "de"), ("url", "acme.com", "/help"), ("and", (0, 1, 2))], [" acme "]
    )
    matcher.set_query(3, [("key", " acme "), ("channel", "x"), ("and", (0, 1))], [" acme "])
    assert matcher.match("acme", "the post", None) == [1, 2]
    assert asked == ["the post"]
    assert matcher.match("nothing", "another", None) == []
    assert asked == ["the post"]
    matcher_with_broken_prepare = Matcher(lambda doc: None, MAX_TEXT)
    matcher_with_broken_prepare.set_query(1, [("key", " acme "), ("author", "bob"), ("and", (0, 1))], [" acme "])
    with pytest.raises(TypeError):
        matcher_with_broken_prepare.match("acme", None, None)
    assert matcher_with_broken_prepare.match("no hit", None, None) == []


# --- Property check of the matcher against the reference evaluator, on awkward text ----------------

TEXT_PIECES = (
    VOCAB
    + [word.upper() for word in VOCAB]
    + ["Acme", "CAFE\u0301", "ＡＣＭＥ", "Straße", "STRASSE", "ÜNÏ", "u\u0308ni\u0308", "ᴀᴄᴍᴇ", "ﬁne", "İ", "ı"]
    + ["🔥", "❤️", "…", "—", "_", "'", "-", ",", " ", "  ", "\u00a0", "\n", "x", "東京", "\u200d", "\u0301"]
)
_property_set: dict[str, object] = {}


def _queries_for_properties():
    if not _property_set:
        rng = random.Random(99)
        queries: dict[int, str] = {}
        while len(queries) < 200:
            text = random_query(rng)
            try:
                parse(text)
            except QuerySyntaxError:
                continue
            queries[len(queries)] = text
        queries[len(queries)] = "東京 OR ᴀᴄᴍᴇ"  # keys with no ASCII letter at all
        _property_set["set"] = QuerySet(queries)
        _property_set["trees"] = {i: parse(text) for i, text in queries.items()}
    return _property_set["set"], _property_set["trees"]


@settings(max_examples=400, deadline=None)
@given(
    pieces=st.lists(st.sampled_from(TEXT_PIECES), max_size=30),
    upper=st.booleans(),
    author=st.sampled_from(AUTHORS),
    lang=st.sampled_from(LANGS),
    channel=st.sampled_from(CHANNELS),
    url=st.sampled_from(URLS),
)
def test_the_matcher_agrees_with_the_reference_on_awkward_text(pieces, upper, author, lang, channel, url):
    text = "".join(pieces)
    if upper:
        text = text.upper()
    doc = Document(text, author=author, lang=lang, channel=channel, url=url)
    query_set, trees = _queries_for_properties()
    assert query_set.match(doc) == reference(trees, doc)
