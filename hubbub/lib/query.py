"""Listening queries: a boolean search language, and a matcher for thousands of them at once.

    (acme OR "acme corp" OR @acmehelp) AND (refund* OR "money back") -job lang:en
    "battery life" NEAR/3 (terrible OR awful)        <- error: NEAR joins two terms or phrases
    battery NEAR/3 terrible

- A term matches a whole word, case-insensitively (Unicode case folding: ß = ss); a post's words
  are its runs of letters, digits and combining marks, so punctuation, emoji, `_`, `#` and `@`
  separate words. `refund*` matches words that start
  with "refund" (at least 3 characters before the `*`). A term with punctuation inside (`e-mail`,
  `don't`) is a phrase of its words.
- `"exact phrase"`: the words in this order, with only punctuation or spaces between them.
- `a NEAR/n b`: a and b, either order, with at most n other words between them (a and b are terms
  or phrases).
- `AND` (also implied between neighbours), `OR`, `NOT`, `-term`, `-"phrase"`, `-(group)`, and
  parentheses. Operators are upper case; precedence is NOT > NEAR > AND > OR.
- Fields: `author:name` (the handle, `@` optional), `lang:en` (also en-GB), `channel:mastodon`,
  `url:example.com/path` (that domain or a subdomain, and a URL path starting with the path).

A query must have something positive every match needs (a term or a field): `-spam` or
`acme OR -spam` would match almost every post, so they are refused.

Matching many queries: each post is normalised once into " word word … " (case-folded, words
separated by single spaces). Every term, phrase and wildcard of every query is a key
(" refund ", " money back ", " refu"), found in a post word by word: one hash lookup per word,
one per wildcard length in use, and a comparison of the next words where a phrase starts. Each
query is indexed under the keys of one clause it cannot match without, so only queries whose
clause was hit are evaluated. Queries whose necessary clause is a field (`author:bob`,
`lang:de`) are indexed by the field value instead. Normalising, finding keys and evaluating run
in C (hubbub/lib/_match.c); this module parses, chooses the clauses and hands each query over
as a small program of nodes.
No user text ever becomes a regular expression.

Networks filter their streams and searches in a weaker syntax: `to_network_rule` writes a query
as an X filtered-stream rule or as plain search keywords, widened to a superset where the network
cannot say it exactly (the matcher narrows again), or raises Untranslatable with the reason.
"""

from __future__ import annotations

import re
import unicodedata
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from functools import lru_cache

from hubbub.lib import _match

MAX_TEXT = 5000
MAX_QUERY = 4000
MAX_TERMS = 200
MAX_DEPTH = 50
MAX_NEAR = 100
MIN_PREFIX = 3
FIELDS = ("author", "channel", "lang", "url")

# A fixed pattern without nested repetition: linear in the query's length whatever it holds.
_LEXEME = re.compile(r'(?P<space>\s+)|(?P<paren>[()])|(?P<phrase>"[^"]*"?)|(?P<minus>-)|(?P<word>[^\s()"]+)')
_NEAR = re.compile(r"NEAR(?:/(\d+))?")
_FIELD = re.compile(r"([A-Za-z]+):")


class QuerySyntaxError(ValueError):
    """The query cannot be used; `position` is the 0-based index of the mistake in `query`."""

    def __init__(self, message: str, position: int, query: str = "", query_id: int | None = None):
        prefix = f"query {query_id}: " if query_id is not None else ""
        super().__init__(f"{prefix}{message} (at character {position + 1})")
        self.message = message
        self.position = position
        self.query = query
        self.query_id = query_id

    def caret(self, width: int = 80) -> str:
        """The query (or the part around the mistake) on one line, and a ^ under the mistake."""
        text = "".join(" " if c.isspace() else c for c in self.query)
        start = max(0, min(self.position - width // 2, len(text) - width))
        shown = text[start : start + width]
        lead = "…" if start > 0 else ""
        tail = "…" if start + width < len(text) else ""
        return f"{lead}{shown}{tail}\n{' ' * (len(lead) + self.position - start)}^"


@dataclass(frozen=True)
class Document:
    """A post, as the matcher sees it."""

    text: str
    author: str = ""
    lang: str = ""
    channel: str = ""
    url: str = ""


# --- The syntax tree -------------------------------------------------------------------------


@dataclass(frozen=True)
class Term:
    word: str
    position: int = field(default=0, compare=False)


@dataclass(frozen=True)
class Wildcard:
    prefix: str
    position: int = field(default=0, compare=False)


@dataclass(frozen=True)
class Phrase:
    words: tuple[str, ...]
    position: int = field(default=0, compare=False)


@dataclass(frozen=True)
class Field:
    name: str
    value: str
    position: int = field(default=0, compare=False)


@dataclass(frozen=True)
class Not:
    child: Node
    position: int = field(default=0, compare=False)


@dataclass(frozen=True)
class And:
    children: tuple[Node, ...]


@dataclass(frozen=True)
class Or:
    children: tuple[Node, ...]


@dataclass(frozen=True)
class Near:
    left: Term | Wildcard | Phrase
    right: Term | Wildcard | Phrase
    distance: int
    position: int = field(default=0, compare=False)


type Leaf = Term | Wildcard | Phrase
type Node = Term | Wildcard | Phrase | Field | Not | And | Or | Near


def normalise(text: str) -> str:
    """Text -> " word word … ": case-folded words separated by single spaces, with a space at each end.

    A word is a run of letters, digits and combining marks; everything else separates words.
    The text is read in NFKC (a decomposed "é" or a "ﬁ" is the word as typed), and "İ", which
    case folding makes "i" + a combining dot, is "i", so İstanbul matches istanbul.
    Runs in C (hubbub/lib/_match.c), which asks _fold_entry() once per non-ASCII character.
    """
    return _match.normalise(text)


# Characters that compose with the character before them although they are not combining marks
# (canonical combining class 0): Indic and other length marks. Unicode lists them as the second
# character of a canonical decomposition; test_query checks this list against unicodedata.
_COMPOSES_WITH_PREVIOUS = frozenset(
    "\u09be\u09d7\u0b3e\u0b56\u0b57\u0bbe\u0bd7\u0cc2\u0cd5\u0cd6\u0d3e\u0d57\u0dcf\u0ddf\u0fb5\u0fb7\u102e\u1b35"
    "\U00011127\U0001133e\U00011357\U000114b0\U000114ba\U000114bd\U000115af\U00011930"
)
# ASCII letters and digits lower-cased, every other ASCII byte a space; UTF-8 bytes of the rest kept.
_ASCII_FOLD = bytes((ord(chr(b).lower()) if chr(b).isalnum() else 32) if b < 128 else b for b in range(256))


def _fold_entry(char: str) -> tuple[str, bool]:
    """What one non-ASCII character becomes in normalised text, and whether its text needs NFKC as a whole.

    NFKC, case folding and the word test all work character by character, except where a
    character's normal form can compose with or reorder against its neighbours: a combining
    mark, a Hangul vowel or final consonant, a few Indic length marks. A post holding one of
    those is put in NFKC whole before its characters are folded.
    """
    nfkc = unicodedata.normalize("NFKC", char)
    context = any(unicodedata.combining(c) or c in _COMPOSES_WITH_PREVIOUS or "\u1160" <= c <= "\u11ff" for c in nfkc)
    folded = "".join(c if _is_word_char(c) else " " for c in nfkc.casefold())
    folded = folded.encode("utf-8", "surrogatepass").translate(_ASCII_FOLD).decode("utf-8", "surrogatepass")
    return folded, context


def _is_word_char(char: str) -> bool:
    if char.isalnum():
        return True
    # Combining marks belong to their word (Devanagari vowel signs, Thai tones); variation
    # selectors only pick an emoji's look.
    return unicodedata.category(char) in ("Mn", "Mc") and not (
        "\ufe00" <= char <= "\ufe0f" or "\U000e0100" <= char <= "\U000e01ef"
    )


_match.set_folder(_fold_entry)


def words(text: str) -> list[str]:
    return normalise(text).split()


def leaf_key(leaf: Leaf) -> str:
    """The matcher key: spaces around a word or phrase make the match whole-word; a prefix has none after."""
    if isinstance(leaf, Term):
        return f" {leaf.word} "
    if isinstance(leaf, Wildcard):
        return f" {leaf.prefix}"
    return f" {' '.join(leaf.words)} "


# --- Parsing ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Token:
    kind: str  # ( ) AND OR NOT NEAR - PHRASE WORD FIELD END
    text: str
    position: int
    distance: int | None = None


_OPERAND_START = {"(", "-", "NOT", "PHRASE", "WORD", "FIELD"}


def parse(query: str) -> Node:
    """Query text -> syntax tree. Raises QuerySyntaxError."""
    if len(query) > MAX_QUERY:
        raise QuerySyntaxError(f"a query can be at most {MAX_QUERY:,} characters", MAX_QUERY, query)
    tokens = _lex(query)
    if tokens[0].kind == "END":
        raise QuerySyntaxError("the query is empty", 0, query)
    node = _Parser(query, tokens).parse()
    negative = _only_negative(node)
    if negative is not None:
        raise QuerySyntaxError(
            "this would match posts without any of your terms: add a term or field every match needs",
            negative,
            query,
        )
    return node


def _lex(query: str) -> list[_Token]:
    tokens: list[_Token] = []
    for found in _LEXEME.finditer(query):
        kind, text, position = found.lastgroup, found[0], found.start()
        if kind == "paren" or kind == "minus":
            tokens.append(_Token(text, text, position))
        elif kind == "phrase":
            if len(text) < 2 or not text.endswith('"'):
                raise QuerySyntaxError("this quote is never closed", position, query)
            tokens.append(_Token("PHRASE", text[1:-1], position))
        elif kind == "word":
            tokens.append(_word_token(query, text, position))
    tokens.append(_Token("END", "", len(query)))
    return tokens


def _word_token(query: str, text: str, position: int) -> _Token:
    if text in ("AND", "OR", "NOT"):
        return _Token(text, text, position)
    near = _NEAR.fullmatch(text)
    if near:
        return _Token("NEAR", text, position, int(near[1]) if near[1] else None)
    if text.startswith("NEAR/"):
        return _Token("NEAR", text, position, None)
    named = _FIELD.match(text)
    if named:
        if named[1].lower() not in FIELDS:
            raise QuerySyntaxError(
                f"unknown field {named[1]!r} (known: {', '.join(FIELDS)}; quote the text to search for it)",
                position,
                query,
            )
        return _Token("FIELD", text, position)
    return _Token("WORD", text, position)


class _Parser:
    def __init__(self, query: str, tokens: list[_Token]):
        self.query = query
        self.tokens = tokens
        self.at = 0
        self.depth = 0
        self.terms = 0

    def error(self, message: str, position: int) -> QuerySyntaxError:
        return QuerySyntaxError(message, position, self.query)

    def peek(self) -> _Token:
        return self.tokens[self.at]

    def take(self) -> _Token:
        token = self.tokens[self.at]
        self.at += 1
        return token

    def parse(self) -> Node:
        node = self.any_of()
        token = self.peek()
        if token.kind == ")":
            raise self.error("this ) has no ( to close", token.position)
        assert token.kind == "END", token
        return node

    def need_operand(self, operator: _Token) -> None:
        if self.peek().kind not in _OPERAND_START:
            raise self.error(f"{operator.text} needs a term after it", operator.position)

    def any_of(self) -> Node:
        children = [self.all_of()]
        while self.peek().kind == "OR":
            operator = self.take()
            self.need_operand(operator)
            children.append(self.all_of())
        return children[0] if len(children) == 1 else Or(tuple(children))

    def all_of(self) -> Node:
        children = [self.near()]
        while True:
            kind = self.peek().kind
            if kind == "AND":
                self.need_operand(self.take())
            elif kind not in _OPERAND_START:
                break
            children.append(self.near())
        return children[0] if len(children) == 1 else And(tuple(children))

    def near(self) -> Node:
        left = self.unary()
        while self.peek().kind == "NEAR":
            operator = self.take()
            if operator.distance is None:
                raise self.error("NEAR needs a distance in words, like NEAR/3", operator.position)
            if operator.distance > MAX_NEAR:
                raise self.error(f"the NEAR distance can be at most {MAX_NEAR}", operator.position)
            self.need_operand(operator)
            right = self.unary()
            if not isinstance(left, Term | Wildcard | Phrase) or not isinstance(right, Term | Wildcard | Phrase):
                raise self.error("NEAR joins two terms or phrases", operator.position)
            left = Near(left, right, operator.distance, operator.position)
        return left

    def unary(self) -> Node:
        token = self.peek()
        if token.kind not in ("NOT", "-"):
            return self.primary()
        self.take()
        if token.kind == "-" and self.peek().kind not in ("(", "PHRASE", "WORD", "FIELD"):
            raise self.error("- needs a term, phrase or group right after it", token.position)
        self.need_operand(token)
        self.enter(token)
        child = self.primary() if token.kind == "-" else self.unary()
        self.depth -= 1
        return Not(child, token.position)

    def enter(self, token: _Token) -> None:
        # Limits recursion here and in evaluation, so hostile nesting is an error, not a RecursionError.
        self.depth += 1
        if self.depth > MAX_DEPTH:
            raise self.error(f"groups and negations can be nested at most {MAX_DEPTH} deep", token.position)

    def primary(self) -> Node:
        token = self.take()
        if token.kind == "(":
            self.enter(token)
            if self.peek().kind == ")":
                raise self.error("empty parentheses", token.position)
            node = self.any_of()
            if self.peek().kind != ")":
                raise self.error("this ( is never closed", token.position)
            self.take()
            self.depth -= 1
            return node
        if token.kind in ("AND", "OR", "NEAR"):
            raise self.error(f"{token.text} needs a term before it", token.position)
        if token.kind == ")":
            raise self.error("this ) has no ( to close", token.position)
        self.terms += 1
        if self.terms > MAX_TERMS:
            raise self.error(f"a query can have at most {MAX_TERMS} terms", token.position)
        if token.kind == "PHRASE":
            found = words(token.text)
            if not found:
                raise self.error("empty phrase", token.position)
            return Term(found[0], token.position) if len(found) == 1 else Phrase(tuple(found), token.position)
        if token.kind == "FIELD":
            return self.field(token)
        return self.word(token)

    def word(self, token: _Token) -> Leaf:
        text = token.text
        star = text.find("*")
        if star >= 0:
            if star != len(text) - 1:
                raise self.error("* can only end a word", token.position + star)
            found = words(text[:-1])
            if len(found) != 1 or not words(text[-2:-1]):
                raise self.error("* must follow a single word, like refund*", token.position + star)
            if len(found[0]) < MIN_PREFIX:
                raise self.error(f"a wildcard needs at least {MIN_PREFIX} letters before the *", token.position)
            return Wildcard(found[0], token.position)
        found = words(text)
        if not found:
            raise self.error("a term needs letters or digits", token.position)
        return Term(found[0], token.position) if len(found) == 1 else Phrase(tuple(found), token.position)

    def field(self, token: _Token) -> Field:
        name, _, raw = token.text.partition(":")
        name = name.lower()
        value_at = token.position + len(name) + 1
        if name == "url":
            host, path = _split_url(raw)
            value = host + path
        else:
            value = raw.casefold().strip()
            if name == "author":
                value = value.lstrip("@")
            elif name == "lang":
                value = value.replace("_", "-")
        if not value or value.startswith("/"):
            raise self.error(f"{name}: needs a value, like {_FIELD_EXAMPLES[name]}", value_at)
        return Field(name, value, token.position)


_FIELD_EXAMPLES = {"author": "author:acme", "channel": "channel:mastodon", "lang": "lang:en", "url": "url:example.com"}


def _only_negative(node: Node) -> int | None:
    """Where the query could match without any positive term or field (a negation's position), or None."""
    if isinstance(node, Not):
        return node.position
    if isinstance(node, Or):
        for child in node.children:
            found = _only_negative(child)
            if found is not None:
                return found
    if isinstance(node, And):
        found = [_only_negative(child) for child in node.children]
        if all(f is not None for f in found):
            return found[0]
    return None


def _split_url(url: str) -> tuple[str, str]:
    """URL or domain -> (host, path): case-folded, without scheme, user, port or "www."-less guessing."""
    url = url.strip().casefold()
    if "://" in url:
        url = url.split("://", 1)[1]
    cut = min((i for i in (url.find("/"), url.find("?"), url.find("#")) if i >= 0), default=len(url))
    host, path = url[:cut], url[cut:]
    host = host.rpartition("@")[2].partition(":")[0].strip(".")
    return host, path


# --- Compiling to evaluators -----------------------------------------------------------------


def _prepare_fields(doc: Document) -> tuple[str, str, str, str, str]:
    """The post's fields as field queries compare them: (author, lang, channel, host, path).

    The C matcher asks for them only when a candidate query has a field, once per post.
    """
    host, path = _split_url(doc.url) if doc.url else ("", "")
    return (
        doc.author.casefold().strip().lstrip("@"),
        doc.lang.casefold().strip().replace("_", "-"),
        doc.channel.casefold().strip(),
        host,
        path or "/",
    )


def _field_matches(doc: Document, index: dict[str, dict[str, set[int]]], found: list[set[int]]) -> None:
    """Add to `found` the ids of field-indexed queries the post's fields bring in.

    Only fields some query is indexed by are read: most posts pay one author lookup.
    """
    authors = index.get("author")
    if authors and doc.author:
        ids = authors.get(doc.author.casefold().strip().lstrip("@"))
        if ids:
            found.append(ids)
    langs = index.get("lang")
    if langs and doc.lang:
        found.extend(langs[value] for value in _lang_values(doc.lang) if value in langs)
    channels = index.get("channel")
    if channels and doc.channel:
        ids = channels.get(_channel_value(doc.channel))
        if ids:
            found.append(ids)
    urls = index.get("url")
    if urls and doc.url:
        # A domain query covers its subdomains: look the host up with each leading label dropped.
        parts = _split_url(doc.url)[0].split(".")
        found.extend(urls[domain] for domain in (".".join(parts[i:]) for i in range(len(parts))) if domain in urls)


# Posts come in a few languages and channels: their values are worked out once.
@lru_cache(maxsize=1024)
def _lang_values(lang: str) -> tuple[str, ...]:
    lang = lang.casefold().strip().replace("_", "-")
    return (lang, lang.split("-", 1)[0]) if "-" in lang else (lang,)


@lru_cache(maxsize=1024)
def _channel_value(channel: str) -> str:
    return channel.casefold().strip()


type Program = list[tuple]


def _program(node: Node) -> Program:
    """The query as the C matcher evaluates it: nodes in order, each child before its parent, the root last.

    ("key", " word ") is true when the key is in the post; ("not", i), ("and", (i, j, …)),
    ("or", (…)) combine earlier nodes; ("near", i, j, n) takes two key nodes; ("author", value),
    ("channel", value), ("lang", value) and ("url", host, path) compare the post's fields.
    """
    program: Program = []

    def add(node: Node) -> int:
        if isinstance(node, Term | Wildcard | Phrase):
            program.append(("key", leaf_key(node)))
        elif isinstance(node, Not):
            program.append(("not", add(node.child)))
        elif isinstance(node, And | Or):
            children = tuple(add(child) for child in node.children)
            program.append(("and" if isinstance(node, And) else "or", children))
        elif isinstance(node, Near):
            left, right = add(node.left), add(node.right)
            program.append(("near", left, right, node.distance))
        elif node.name == "url":
            program.append(("url", *_split_url(node.value)))
        else:
            program.append((node.name, node.value))
        return len(program) - 1

    add(node)
    return program


def _leaves(node: Node) -> Iterable[Leaf]:
    if isinstance(node, Term | Wildcard | Phrase):
        yield node
    elif isinstance(node, Not):
        yield from _leaves(node.child)
    elif isinstance(node, Near):
        yield node.left
        yield node.right
    elif isinstance(node, And | Or):
        for child in node.children:
            yield from _leaves(child)


type TriggerKey = str | tuple[str, str]

# Fields every post has few values of (languages, channels) bring in many posts; handles and
# domains few.
_FIELD_COST = {"author": 1.0, "url": 2.0, "channel": 1000.0, "lang": 1000.0}


def _required(node: Node, cost: Callable[[TriggerKey], float]) -> frozenset[TriggerKey] | None:
    """Keys of which every match has at least one (one clause the query cannot match without), or None.

    Of several such clauses (the parts of an AND) the one with the lowest total `cost` is chosen.
    """
    if isinstance(node, Term | Wildcard | Phrase):
        return frozenset([leaf_key(node)])
    if isinstance(node, Field):
        value = _split_url(node.value)[0] if node.name == "url" else node.value
        return frozenset([(node.name, value)])
    if isinstance(node, Not):
        return None
    if isinstance(node, Near):
        clauses = [frozenset([leaf_key(node.left)]), frozenset([leaf_key(node.right)])]
    else:
        found = [_required(child, cost) for child in node.children]
        if isinstance(node, Or):
            return None if any(c is None for c in found) else frozenset().union(*found)  # type: ignore[arg-type]
        clauses = [c for c in found if c is not None]
    return min(clauses, key=lambda keys: sum(cost(k) for k in keys)) if clauses else None


@dataclass(frozen=True)
class _Compiled:
    node: Node
    program: Program
    keys: frozenset[str]  # every term, phrase and prefix key


@lru_cache(maxsize=512)
def _compile_query(query: str) -> _Compiled:
    node = parse(query)
    return _Compiled(node, _program(node), frozenset(leaf_key(leaf) for leaf in _leaves(node)))


class QuerySet:
    """Many queries matched together against a stream of posts.

    Each query is indexed under one clause it needs. The clause is chosen by how many queries
    share its keys: a brand name is in a handful of queries and a handful of posts, while words
    like "refund" or "customer service" are in hundreds of both, so the clause with the rarest
    keys brings in the fewest candidates to evaluate. Queries whose cheapest such clause is a
    field (`author:bob`, `url:acme.com`) are indexed by the field's value here; the rest, with
    every query's program, live in the C matcher (hubbub/lib/_match.c), which normalises each
    post, finds the keys in it word by word, and evaluates the candidates their hits bring in.

    Not thread-safe: build one per worker; edits (`replace`, `remove`) take milliseconds.
    """

    def __init__(self, queries: dict[int, str] | None = None):
        self._queries: dict[int, _Compiled] = {}
        self._key_users: Counter[str] = Counter()
        self._field_triggers: dict[str, dict[str, set[int]]] = {}  # field name -> value -> query ids
        self._field_keys: dict[int, list[tuple[str, str]]] = {}
        self._matcher = _match.Matcher(_prepare_fields, MAX_TEXT)
        compiled = {query_id: _compile_or_name(query_id, text) for query_id, text in (queries or {}).items()}
        # Count every query's keys first, so each one is indexed knowing how common its keys are.
        for each in compiled.values():
            self._key_users.update(each.keys)
        for query_id, each in compiled.items():
            self._register(query_id, each)

    def __len__(self) -> int:
        return len(self._queries)

    def __contains__(self, query_id: int) -> bool:
        return query_id in self._queries

    def replace(self, query_id: int, text: str) -> None:
        """Add or edit one query. Raises QuerySyntaxError and leaves the set unchanged if the text is wrong."""
        compiled = _compile_or_name(query_id, text)
        self._forget(query_id)
        self._key_users.update(compiled.keys)
        self._register(query_id, compiled)

    def remove(self, query_id: int) -> None:
        if query_id in self._queries:
            self._forget(query_id)
            self._matcher.remove_query(query_id)

    def match(self, doc: Document) -> list[int]:
        """Ids of the queries that match the post, sorted."""
        found: list[set[int]] | None = None
        if self._field_triggers:
            found = []
            _field_matches(doc, self._field_triggers, found)
        return self._matcher.match(doc.text, doc, found or None)

    def keys(self) -> list[str]:
        """Every key of every query (for benchmarks and debugging)."""
        return list(self._key_users)

    def _cost(self, key: TriggerKey) -> float:
        if isinstance(key, tuple):
            return _FIELD_COST[key[0]]
        users = self._key_users[key]
        if not key.endswith(" ") or len(key) <= 5:
            return users * 3.0  # a prefix, or a word of three letters or fewer, is in many posts
        return float(users)

    def _register(self, query_id: int, compiled: _Compiled) -> None:
        triggers = _required(compiled.node, self._cost)
        assert triggers is not None, "parse refuses queries without a required positive clause"
        fields = [trigger for trigger in triggers if isinstance(trigger, tuple)]
        self._matcher.set_query(query_id, compiled.program, [t for t in triggers if isinstance(t, str)])
        self._queries[query_id] = compiled
        self._field_keys[query_id] = fields
        for name, value in fields:
            self._field_triggers.setdefault(name, {}).setdefault(value, set()).add(query_id)

    def _forget(self, query_id: int) -> None:
        """Drop the query from the Python side's counts and field index (set_query or remove_query drops it in C)."""
        compiled = self._queries.pop(query_id, None)
        if compiled is None:
            return
        self._key_users.subtract(compiled.keys)
        for key in compiled.keys:
            if self._key_users[key] <= 0:
                del self._key_users[key]
        for name, value in self._field_keys.pop(query_id):
            by_value = self._field_triggers[name]
            by_value[value].discard(query_id)
            if not by_value[value]:
                del by_value[value]
                if not by_value:
                    del self._field_triggers[name]  # so that posts stop reading a field no query uses


def _compile_or_name(query_id: int, text: str) -> _Compiled:
    try:
        return _compile_query(text)
    except QuerySyntaxError as exc:
        raise QuerySyntaxError(exc.message, exc.position, text, query_id) from None


# --- Translating to a network's own search syntax --------------------------------------------
#
# Streams and search endpoints filter on the network's side before a post reaches us, in a
# syntax weaker than ours. A translation must be a superset of the query (every post the query
# matches passes the network's filter; the boolean evaluation narrows the rest again), so a part
# the network cannot express is dropped from an AND (which only widens) and nothing under a NOT
# may be widened (that would narrow).

X_RULE_LIMIT = 512  # characters in one filtered-stream rule (X API v2, basic and pro access)


class Untranslatable(ValueError):
    """The network's syntax cannot express even a superset of the query; the message says why."""


@dataclass(frozen=True)
class _Out:
    """A translated part.

    `text` None is "every post" (a part the network cannot express, dropped, or
    channel:this-network); "" is "no post" (channel:another-network). `exact` says the text
    matches exactly the query's part rather than a superset of it; `standalone` that X accepts it
    as a rule on its own (X refuses rules made only of lang: and negations); `atom` that a - can
    be put in front of it as it is.
    """

    text: str | None
    exact: bool
    standalone: bool = False
    atom: bool = True


_EVERY = _Out(None, True)
_WIDENED = _Out(None, False)
_NO_POST = _Out("", True)


def to_network_rule(query: str, network: str) -> str:
    """The query in `network`'s syntax: an X filtered-stream rule for "twitter", keywords otherwise.

    The result is a superset of the query. Raises QuerySyntaxError for a bad query and
    Untranslatable, with the reason, when the network cannot filter for it at all.
    """
    node = parse(query)
    if network == "twitter":
        return _x_rule(node)
    return _keyword_search(node, network)


def _x_rule(node: Node) -> str:
    out = _x(node)
    if out.text == "":
        raise Untranslatable("it can never match a post from this network (channel:)")
    if out.text is None or not out.standalone:
        raise Untranslatable("X needs a word, phrase, author: or url: that every match has, and this query has none")
    if len(out.text) > X_RULE_LIMIT:
        raise Untranslatable(f"the X rule would be {len(out.text)} characters (X allows {X_RULE_LIMIT})")
    return out.text


def _x(node: Node) -> _Out:
    if isinstance(node, Term):
        return _Out(node.word, True, True)
    if isinstance(node, Phrase):
        return _Out(f'"{" ".join(node.words)}"', True, True)
    if isinstance(node, Wildcard):
        return _WIDENED  # X rules have no wildcards
    if isinstance(node, Field):
        return _x_field(node)
    if isinstance(node, Near):
        # No proximity operator for streams: both sides anywhere in the post is a superset.
        both = _x_all([_x(node.left), _x(node.right)])
        return _Out(both.text, False, both.standalone, both.atom)
    if isinstance(node, Not) and isinstance(node.child, Not):
        return _x(node.child.child)
    if isinstance(node, Not):
        child = _x(node.child)
        if not child.exact:
            return _WIDENED  # negating a widened part would narrow the query: drop the negation
        if child.text is None:
            return _NO_POST
        if child.text == "":
            return _EVERY
        return _Out(f"-{child.text}" if child.atom else f"-({child.text})", True)
    parts = [_x(child) for child in node.children]
    return _x_all(parts) if isinstance(node, And) else _x_any(parts)


def _x_field(node: Field) -> _Out:
    if node.name == "author":
        return _Out(f"from:{node.value}", True, True) if _X_HANDLE.fullmatch(node.value) else _WIDENED
    if node.name == "channel":
        return _EVERY if node.value in ("twitter", "x") else _NO_POST
    if node.name == "lang":
        # X tags a post with a bare language code: lang:en-gb can only be widened to lang:en.
        code, _, region = node.value.partition("-")
        return _Out(f"lang:{code}", not region) if _X_LANG.fullmatch(code) else _WIDENED
    return _Out(f'url:"{node.value}"', True, True) if _X_URL.fullmatch(node.value) else _WIDENED


_X_HANDLE = re.compile(r"[a-z0-9_]{1,15}")
_X_LANG = re.compile(r"[a-z]{2,3}")
_X_URL = re.compile(r"[a-z0-9.\-]+(/[A-Za-z0-9._~%/\-]*)?")


def _x_all(parts: list[_Out]) -> _Out:
    if any(p.text == "" for p in parts):
        return _NO_POST
    exact = all(p.exact for p in parts)
    kept = [p for p in parts if p.text is not None]
    if not kept:
        return _Out(None, exact)
    if len(kept) == 1:
        return _Out(kept[0].text, exact, kept[0].standalone, kept[0].atom)
    return _Out(" ".join(p.text for p in kept if p.text), exact, any(p.standalone for p in kept), False)


def _x_any(parts: list[_Out]) -> _Out:
    exact = all(p.exact for p in parts)
    if any(p.text is None for p in parts):
        return _Out(None, exact)  # one branch lets every post through, so the whole OR does
    kept = [p for p in parts if p.text]
    if not kept:
        return _NO_POST
    if len(kept) == 1:
        return _Out(kept[0].text, exact, kept[0].standalone, kept[0].atom)
    # X applies AND before OR; parentheses round each branch say so to a human reader too.
    branches = " OR ".join(p.text if p.atom else f"({p.text})" for p in kept if p.text)
    return _Out(f"({branches})", exact, all(p.standalone for p in kept))


def _keyword_search(node: Node, network: str) -> str:
    """Words and phrases every match has, for search endpoints that only AND plain keywords."""
    if network in _never_channels(node, network):
        raise Untranslatable("it can never match a post from this network (channel:)")
    needed = _needed_words(node)
    if not needed:
        raise Untranslatable(
            "no word or phrase is in every match (alternatives, wildcards and fields cannot be one keyword search)"
        )
    return " ".join(sorted(needed))


def _needed_words(node: Node) -> set[str]:
    if isinstance(node, Term):
        return {node.word}
    if isinstance(node, Phrase):
        return {f'"{" ".join(node.words)}"'}
    if isinstance(node, Near):
        return _needed_words(node.left) | _needed_words(node.right)
    if isinstance(node, And):
        return set().union(*(_needed_words(c) for c in node.children))
    if isinstance(node, Or):
        found = [_needed_words(c) for c in node.children]
        return set.intersection(*found)
    return set()  # wildcards, fields and negations add nothing a plain search can require


def _never_channels(node: Node, network: str) -> set[str]:
    """{network} when every match needs a channel: other than `network`."""
    if isinstance(node, Field):
        return {network} if node.name == "channel" and node.value != network else set()
    if isinstance(node, And):
        return set().union(*(_never_channels(c, network) for c in node.children))
    if isinstance(node, Or):
        return set.intersection(*(_never_channels(c, network) for c in node.children))
    return set()
