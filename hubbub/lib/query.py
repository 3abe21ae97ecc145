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
separated by single spaces). Every term, phrase and wildcard of every query is a key in one
Aho-Corasick automaton, written with its surrounding spaces (" refund ", " money back ",
" refu"), so one scan finds exactly the whole-word hits, phrases across punctuation included.
Each query is indexed under the keys of one clause it cannot match without, so only queries
whose clause was hit are evaluated, as set lookups on the hits. Queries whose necessary clause
is a field (`author:bob`, `lang:de`) are indexed by the field value instead. Before any of
this, a second automaton of one word per indexed key scans the post only case-folded, and
turns away the posts that cannot trigger anything (most of them) without normalising them.
No user text ever becomes a regular expression.

Networks filter their streams and searches in a weaker syntax: `to_network_rule` writes a query
as an X filtered-stream rule or as plain search keywords, widened to a superset where the network
cannot say it exactly (the matcher narrows again), or raises Untranslatable with the reason.
"""

from __future__ import annotations

import re
import unicodedata
from bisect import bisect_right
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from functools import lru_cache
from operator import itemgetter

import ahocorasick

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
    """
    # Every step is one pass in C over the text; Python only loops over the few distinct
    # non-ASCII characters of a post. The ASCII part is folded by a byte table, because
    # str.translate with a table is a per-character dict lookup on any non-ASCII text.
    if text.isascii():
        folded = text.encode().translate(_ASCII_FOLD).decode()
    else:
        # NFKC first so that a decomposed "é" (e + combining accent) or "ﬁ" is the word as typed.
        if not unicodedata.is_normalized("NFKC", text):
            text = _nfkc(text)
        data = text.encode("utf-8", "surrogatepass").translate(_ASCII_FOLD)
        folded = data.decode("utf-8", "surrogatepass")
        # A post holds few distinct non-ASCII characters: folding each of them once (case, and
        # separators to spaces) is several times cheaper than case-folding the whole text. A
        # hostile post of thousands would make that quadratic: it is folded character by character.
        chars = set(data.translate(None, _ASCII_BYTES).decode("utf-8", "surrogatepass"))
        if len(chars) > _FEW_CHARACTERS:
            folded = "".join([c if c < "\x80" else _fold_char(c) or c for c in folded])
        else:
            for char in chars:
                replacement = _fold_char(char)
                if replacement is not None:
                    folded = folded.replace(char, replacement)
        if "\u0307" in folded:
            # Case folding turns "İ" into "i" + combining dot; drop the dot so İstanbul matches istanbul.
            folded = folded.replace("i\u0307", "i")
    # Separators are spaces now; halving every run of them per pass costs log2(longest run)
    # passes in C, where split() and join() would make one object per word.
    while "  " in folded:
        folded = folded.replace("  ", " ")
    return f" {folded.strip(' ')} "


def _nfkc(text: str) -> str:
    """unicodedata.normalize("NFKC", text), cheaply for the usual reason a post is not NFKC: a "…" or "ｘ".

    Replacing a character by its own NFKC form leaves the text's compatibility decomposition
    (NFKD) unchanged, and NFKC is the composition of NFKD, so the NFKC form of the result is
    that of the text. When the result is already in NFKC, it is the answer; otherwise (a
    combining mark that composes with its neighbour) the whole text is normalised.
    """
    chars = set(text.encode("utf-8", "surrogatepass").translate(None, _ASCII_BYTES).decode("utf-8", "surrogatepass"))
    if len(chars) > _FEW_CHARACTERS:
        return unicodedata.normalize("NFKC", text)  # one pass, where a replace per character would be quadratic
    for char in chars:
        replacement = _nfkc_char(char)
        if replacement != char:
            text = text.replace(char, replacement)
    return text if unicodedata.is_normalized("NFKC", text) else unicodedata.normalize("NFKC", text)


@lru_cache(maxsize=8192)
def _nfkc_char(char: str) -> str:
    return unicodedata.normalize("NFKC", char)


# ASCII letters and digits lower-cased, every other ASCII byte a space; UTF-8 bytes of the rest kept.
_ASCII_FOLD = bytes((ord(chr(b).lower()) if chr(b).isalnum() else 32) if b < 128 else b for b in range(256))
_ASCII_BYTES = bytes(range(128))
_FOLD_CACHE_SIZE = 65536
_FEW_CHARACTERS = 64  # distinct non-ASCII characters in a post up to which each is replaced in one pass
_folds: dict[str, str | None] = {}


def _fold_char(char: str) -> str | None:
    """What one non-ASCII character becomes in normalised text, or None when it stays as it is.

    Case folding works character by character and is idempotent, so folding each distinct
    character on its own gives the same text as folding the whole post. A plain dict, not
    lru_cache: this is called for every distinct character of every post.
    """
    try:
        return _folds[char]
    except KeyError:
        pass
    if len(_folds) >= _FOLD_CACHE_SIZE:
        _folds.clear()  # hostile posts full of rare characters must not grow the cache forever
    folded = "".join(c if _is_word_char(c) else " " for c in char.casefold())
    folded = folded.encode("utf-8", "surrogatepass").translate(_ASCII_FOLD).decode("utf-8", "surrogatepass")
    result = _folds[char] = None if folded == char else folded
    return result


@lru_cache(maxsize=8192)
def _is_word_char(char: str) -> bool:
    if char.isalnum():
        return True
    # Combining marks belong to their word (Devanagari vowel signs, Thai tones); variation
    # selectors only pick an emoji's look.
    return unicodedata.category(char) in ("Mn", "Mc") and not (
        "\ufe00" <= char <= "\ufe0f" or "\U000e0100" <= char <= "\U000e01ef"
    )


def words(text: str) -> list[str]:
    return normalise(text).split()


def leaf_key(leaf: Leaf) -> str:
    """The automaton key: spaces around a word or phrase make the match whole-word; a prefix has none after."""
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


class _Post:
    """One document, prepared once for all queries: its normalised text, the keys it contains, its fields."""

    __slots__ = ("doc", "norm", "hits", "author", "lang", "channel", "host", "path", "_tokens", "_starts")

    def __init__(self, doc: Document, norm: str, hits: set[str]):
        self.doc = doc
        self.norm = norm
        self.hits = hits
        self._tokens: list[str] | None = None
        self._starts: dict[str, list[int]] = {}

    def __getattr__(self, name: str) -> str:
        # Called only for a field not yet set: most candidates are decided by their words
        # alone, so the fields are read from the post the first time a query asks for one.
        if name not in _POST_FIELDS:
            raise AttributeError(name)
        doc = self.doc
        self.author = doc.author.casefold().strip().lstrip("@")
        self.lang = doc.lang.casefold().strip().replace("_", "-")
        self.channel = doc.channel.casefold().strip()
        self.host, path = _split_url(doc.url) if doc.url else ("", "")
        self.path = path or "/"
        return getattr(self, name)

    def starts(self, leaf: Leaf, key: str) -> list[int]:
        """Word positions where the leaf begins, in order (only needed by NEAR, so computed lazily)."""
        found = self._starts.get(key)
        if found is not None:
            return found
        if self._tokens is None:
            self._tokens = self.norm.split()
        tokens = self._tokens
        if isinstance(leaf, Term):
            found = [i for i, t in enumerate(tokens) if t == leaf.word]
        elif isinstance(leaf, Wildcard):
            found = [i for i, t in enumerate(tokens) if t.startswith(leaf.prefix)]
        else:
            first, size, phrase = leaf.words[0], len(leaf.words), list(leaf.words)
            found = [i for i, t in enumerate(tokens) if t == first and tokens[i : i + size] == phrase]
        self._starts[key] = found
        return found


_POST_FIELDS = frozenset(["author", "lang", "channel", "host", "path"])


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


_second = itemgetter(1)

type Evaluator = Callable[[_Post], bool]


def _compile(node: Node) -> Evaluator:
    if isinstance(node, Term | Wildcard | Phrase):
        key = leaf_key(node)
        return lambda post: key in post.hits
    if isinstance(node, Not):
        child = _compile(node.child)
        return lambda post: not child(post)
    if isinstance(node, Field):
        return _compile_field(node)
    if isinstance(node, Near):
        return _compile_near(node)
    # Children made only of words are checked together as set operations inside one function:
    # a typical query, (brand names) AND (issues) -noise, is then a single call, not one per node.
    leaves = frozenset(leaf_key(c) for c in node.children if isinstance(c, Term | Wildcard | Phrase))
    inner = Or if isinstance(node, And) else And
    groups = tuple(frozenset(map(leaf_key, c.children)) for c in node.children if _leaf_group(c, inner))
    negated = frozenset(leaf_key(c.child) for c in node.children if _negated_leaf(c))
    rest = tuple(
        _compile(c)
        for c in node.children
        if not isinstance(c, Term | Wildcard | Phrase) and not _leaf_group(c, inner) and not _negated_leaf(c)
    )
    if isinstance(node, And):

        def all_of(post: _Post) -> bool:
            hits = post.hits
            if not leaves <= hits or not negated.isdisjoint(hits):
                return False
            # Plain loops: all() over a generator costs more on this, the hottest path.
            for one_of in groups:
                if one_of.isdisjoint(hits):
                    return False
            for child in rest:  # noqa: SIM110
                if not child(post):
                    return False
            return True

        return all_of

    def any_of(post: _Post) -> bool:
        hits = post.hits
        if not leaves.isdisjoint(hits) or (negated and not negated <= hits):
            return True
        for every in groups:
            if every <= hits:
                return True
        for child in rest:  # noqa: SIM110
            if child(post):
                return True
        return False

    return any_of


def _leaf_group(node: Node, kind: type[And] | type[Or]) -> bool:
    return isinstance(node, kind) and all(isinstance(c, Term | Wildcard | Phrase) for c in node.children)


def _negated_leaf(node: Node) -> bool:
    return isinstance(node, Not) and isinstance(node.child, Term | Wildcard | Phrase)


def _compile_field(node: Field) -> Evaluator:
    value = node.value
    if node.name == "author":
        return lambda post: post.author == value
    if node.name == "channel":
        return lambda post: post.channel == value
    if node.name == "lang":
        subtag = value + "-"
        return lambda post: post.lang == value or post.lang.startswith(subtag)
    host, path = _split_url(value)
    subdomain = "." + host
    return lambda post: (post.host == host or post.host.endswith(subdomain)) and post.path.startswith(path)


def _compile_near(node: Near) -> Evaluator:
    left, right, distance = node.left, node.right, node.distance
    left_key, right_key = leaf_key(left), leaf_key(right)
    left_size = len(left.words) if isinstance(left, Phrase) else 1
    right_size = len(right.words) if isinstance(right, Phrase) else 1

    def near(post: _Post) -> bool:
        if left_key not in post.hits or right_key not in post.hits:
            return False
        others = post.starts(right, right_key)
        for start in post.starts(left, left_key):
            end = start + left_size - 1
            # The first right-hand match after this one, and the last one that ends before it.
            after = bisect_right(others, end)
            if after < len(others) and others[after] - end - 1 <= distance:
                return True
            before = bisect_right(others, start - right_size) - 1
            if before >= 0 and start - (others[before] + right_size - 1) - 1 <= distance:
                return True
        return False

    return near


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
    evaluate: Evaluator
    keys: frozenset[str]  # every term, phrase and prefix key, for the automaton


@lru_cache(maxsize=512)
def _compile_query(query: str) -> _Compiled:
    node = parse(query)
    return _Compiled(node, _compile(node), frozenset(leaf_key(leaf) for leaf in _leaves(node)))


def matches(query: str, doc: Document) -> bool:
    """Whether one query matches one post (the editor's preview). Raises QuerySyntaxError."""
    compiled = _compile_query(query)
    norm = normalise(doc.text[:MAX_TEXT])
    # Keys carry their spaces, so a substring test is a whole-word test.
    return compiled.evaluate(_Post(doc, norm, {k for k in compiled.keys if k in norm}))


class QuerySet:
    """Many queries matched together against a stream of posts.

    Each query is indexed under one clause it needs. The clause is chosen by how many queries
    share its keys: a brand name is in a handful of queries and a handful of posts, while words
    like "refund" or "customer service" are in hundreds of both, so the clause with the rarest
    keys brings in the fewest candidates to evaluate.

    Most posts concern none of the queries, so they are turned away before the costly part
    (normalising the text into words): a second automaton holds one word of every key some
    query is indexed under, without the spaces, and scans the post merely case-folded (C). A
    word of the normalised text is a substring of that folded text, so a post whose folded
    text holds none of these words cannot trigger any query by its text.

    Not thread-safe: build one per worker; edits (`replace`, `remove`) take milliseconds.
    """

    def __init__(self, queries: dict[int, str] | None = None):
        self._queries: dict[int, _Compiled] = {}
        self._evaluators: dict[int, Evaluator] = {}
        self._triggers: dict[int, frozenset[TriggerKey]] = {}
        self._key_users: Counter[str] = Counter()
        self._text_triggers: dict[str, set[int]] = {}
        self._field_triggers: dict[str, dict[str, set[int]]] = {}  # field name -> value -> query ids
        self._automaton = ahocorasick.Automaton()
        self._dirty = False
        self._prefilter_users: Counter[str] = Counter()
        self._prefilter = ahocorasick.Automaton()
        self._prefilter_dirty = False
        compiled = {query_id: _compile_or_name(query_id, text) for query_id, text in (queries or {}).items()}
        # Count every query's keys first, so each one is indexed knowing how common its keys are.
        for each in compiled.values():
            self._use(each.keys)
        for query_id, each in compiled.items():
            self._register(query_id, each)
        self._refresh()

    def __len__(self) -> int:
        return len(self._queries)

    def __contains__(self, query_id: int) -> bool:
        return query_id in self._queries

    def replace(self, query_id: int, text: str) -> None:
        """Add or edit one query. Raises QuerySyntaxError and leaves the set unchanged if the text is wrong."""
        compiled = _compile_or_name(query_id, text)
        # Take the new keys before releasing the old ones, so keys the edit keeps stay in the automaton.
        self._use(compiled.keys)
        self._drop(query_id)
        self._register(query_id, compiled)
        self._refresh()

    def remove(self, query_id: int) -> None:
        self._drop(query_id)
        self._refresh()

    def match(self, doc: Document) -> list[int]:
        """Ids of the queries that match the post, sorted."""
        text = doc.text
        if len(text) > MAX_TEXT:
            text = text[:MAX_TEXT]
        found: list[set[int]] = []
        if self._field_triggers:
            _field_matches(doc, self._field_triggers, found)
        # The first prefilter hit is enough to go on; most posts have none.
        text_may_trigger = bool(self._prefilter_users) and next(self._prefilter.iter(_casefold(text)), None) is not None
        if not text_may_trigger and not found:
            return []
        norm = normalise(text)
        hits: set[str] = set(map(_second, self._automaton.iter(norm))) if self._key_users else set()
        if text_may_trigger:
            triggers = self._text_triggers
            # A set and a dict's keys intersect in C: only keys some query is indexed under are looked up.
            found.extend([triggers[key] for key in hits & triggers.keys()])
            if not found:
                return []
        candidates = found[0] if len(found) == 1 else set().union(*found)
        post = _Post(doc, norm, hits)
        evaluators = self._evaluators
        return sorted([i for i in candidates if evaluators[i](post)])

    def keys(self) -> list[str]:
        """The automaton's keys (for benchmarks and debugging)."""
        return list(self._key_users)

    def _cost(self, key: TriggerKey) -> float:
        if isinstance(key, tuple):
            return _FIELD_COST[key[0]]
        users = self._key_users[key]
        if not key.endswith(" ") or len(key) <= 5:
            return users * 3.0  # a prefix, or a word of three letters or fewer, is in many posts
        return float(users)

    def _use(self, keys: frozenset[str]) -> None:
        for key in keys:
            self._key_users[key] += 1
            if self._key_users[key] == 1:
                self._automaton.add_word(key, key)
                self._dirty = True

    def _register(self, query_id: int, compiled: _Compiled) -> None:
        triggers = _required(compiled.node, self._cost)
        assert triggers is not None, "parse refuses queries without a required positive clause"
        self._queries[query_id] = compiled
        self._evaluators[query_id] = compiled.evaluate
        self._triggers[query_id] = triggers
        for trigger in triggers:
            if isinstance(trigger, tuple):
                name, value = trigger
                self._field_triggers.setdefault(name, {}).setdefault(value, set()).add(query_id)
            else:
                ids = self._text_triggers.get(trigger)
                if ids is None:
                    ids = self._text_triggers[trigger] = set()
                    word = _prefilter_word(trigger)
                    self._prefilter_users[word] += 1
                    if self._prefilter_users[word] == 1:
                        self._prefilter.add_word(word, None)
                        self._prefilter_dirty = True
                ids.add(query_id)

    def _drop(self, query_id: int) -> None:
        compiled = self._queries.pop(query_id, None)
        if compiled is None:
            return
        del self._evaluators[query_id]
        for key in compiled.keys:
            self._key_users[key] -= 1
            if not self._key_users[key]:
                del self._key_users[key]
                self._automaton.remove_word(key)
                self._dirty = True
        for trigger in self._triggers.pop(query_id):
            if isinstance(trigger, tuple):
                name, value = trigger
                by_value = self._field_triggers[name]
                by_value[value].discard(query_id)
                if not by_value[value]:
                    del by_value[value]
                    if not by_value:
                        del self._field_triggers[name]  # so that posts stop reading a field no query uses
                continue
            ids = self._text_triggers[trigger]
            ids.discard(query_id)
            if not ids:
                del self._text_triggers[trigger]
                word = _prefilter_word(trigger)
                self._prefilter_users[word] -= 1
                if not self._prefilter_users[word]:
                    del self._prefilter_users[word]
                    self._prefilter.remove_word(word)
                    self._prefilter_dirty = True

    def _refresh(self) -> None:
        # Adding or removing words turns the automaton back into a plain trie; relinking it is
        # one pass in C (about 10 ms for 40,000 keys), so edits relink the whole thing eagerly.
        if self._dirty and self._key_users:
            self._automaton.make_automaton()
        self._dirty = False
        if self._prefilter_dirty and self._prefilter_users:
            self._prefilter.make_automaton()
        self._prefilter_dirty = False


def _prefilter_word(key: str) -> str:
    """One word of an automaton key: the first of four letters or more, else the longest.

    In a phrase, the first long word is usually the distinctive one ("acme router",
    "money back"); the longest is often a common word ("acme subscription").
    """
    found = key.split()
    return next((word for word in found if len(word) >= 4), None) or max(found, key=len)


def _casefold(text: str) -> str:
    """The text as normalise() folds it, but with the separators left in: its words are substrings of this."""
    if text.isascii():
        return text.lower()
    if not unicodedata.is_normalized("NFKC", text):
        text = _nfkc(text)
    folded = text.casefold()
    return folded.replace("i\u0307", "i") if "\u0307" in folded else folded


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
