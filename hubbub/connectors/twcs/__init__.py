"""Imports of past traffic in the Customer Support on Twitter format (CSV or JSONL).

Columns: tweet_id, author_id, inbound, created_at, text, response_tweet_id, in_response_to_tweet_id.
Brands are the authors whose posts have inbound=False; every customer post is filed under the
brand it talks to, found through the reply chain first and its @mentions second.
"""

from __future__ import annotations

import csv
import datetime as dt
import json
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from hubbub.connectors.base import (
    AccountConfig,
    FetchResult,
    MalformedEvent,
    PermanentError,
    Post,
    Published,
    RawPost,
    Reply,
)

COLUMNS = ("tweet_id", "author_id", "inbound", "created_at", "text", "response_tweet_id", "in_response_to_tweet_id")
MAX_FIELD = 20_000
MENTION = re.compile(r"@(\w{1,50})")
csv.field_size_limit(1_000_000)


class ImportFormatError(ValueError):
    pass


@dataclass(frozen=True)
class Row:
    line: int
    data: dict[str, Any]


@dataclass(frozen=True)
class Rejected:
    line: int
    reason: str


def read_rows(path: Path) -> Iterator[Row | Rejected]:
    """Yield each record of a CSV or JSONL file, or a Rejected saying why a line cannot be read."""
    if path.suffix.lower() in (".jsonl", ".ndjson", ".json"):
        yield from _read_jsonl(path)
    else:
        yield from _read_csv(path)


# Stands in for a bare carriage return while the csv module reads a line (see _lines).
_BARE_CR = "\ue00d"


def _lines(handle: Iterable[str]) -> Iterator[str]:
    # Real exports hold bare CRs in unquoted text, which the csv module would take for line ends:
    # only "\n" ends a record, and a bare CR becomes a line break inside the text.
    for line in handle:
        if line.endswith("\r\n"):
            line = line[:-2] + "\n"
        yield line.replace("\r", _BARE_CR)


def _read_csv(path: Path) -> Iterator[Row | Rejected]:
    with path.open(newline="\n", encoding="utf-8", errors="replace") as handle:
        reader = csv.DictReader(_lines(handle))
        missing = [c for c in ("tweet_id", "author_id", "inbound", "text") if c not in (reader.fieldnames or [])]
        if missing:
            raise ImportFormatError(f"{path}: not a Customer Support on Twitter file, missing columns {missing}")
        for record in reader:
            yield _checked(reader.line_num, record)


def _read_jsonl(path: Path) -> Iterator[Row | Rejected]:
    with path.open(encoding="utf-8", errors="replace") as handle:
        for number, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError as exc:
                yield Rejected(number, f"not JSON: {exc.msg} at column {exc.colno}")
                continue
            if not isinstance(record, dict):
                yield Rejected(number, "a line must hold one JSON object")
                continue
            yield _checked(number, record)


def _checked(line: int, record: dict[str, Any]) -> Row | Rejected:
    tweet_id = _tweet_id(record.get("tweet_id"))
    if not tweet_id or len(tweet_id) > 64:
        return Rejected(line, "no tweet_id")
    data = {}
    for column in COLUMNS:
        value = record.get(column)
        if type(value) is str and _BARE_CR not in value:
            data[column] = value[:MAX_FIELD]  # what a CSV cell nearly always is: nothing to clean
        else:
            data[column] = _clean(value)
    data["tweet_id"] = tweet_id
    data["in_response_to_tweet_id"] = _tweet_id(data["in_response_to_tweet_id"])
    if data["response_tweet_id"]:
        data["response_tweet_id"] = ",".join(
            filter(None, (_tweet_id(part) for part in data["response_tweet_id"].split(",")))
        )
    return Row(line, data)


def _tweet_id(value: Any) -> str:
    # Spreadsheet tools write ids as floats ("3.0"); the id is the integer part.
    text = str(value or "").strip()
    if text.endswith(".0") and text[:-2].isdigit():
        return text[:-2]
    return text


def _clean(value: Any) -> Any:
    if value is None:
        return ""
    if isinstance(value, bool | int | float):
        return str(value)
    text = str(value).replace(_BARE_CR, "\n")
    return text[:MAX_FIELD]


def is_inbound(value: Any) -> bool:
    return str(value).strip().lower() in ("true", "1", "yes")


def file_brands(rows: Iterable[Row]) -> dict[str, str]:
    """tweet_id -> brand handle, for every post a brand wrote."""
    return {r.data["tweet_id"]: r.data["author_id"] for r in rows if not is_inbound(r.data["inbound"])}


def brand_of(row: Row, brand_posts: dict[str, str], replies_to: dict[str, list[str]], brands: set[str]) -> str:
    """The brand account a post belongs to."""
    data = row.data
    if not is_inbound(data["inbound"]):
        return data["author_id"]
    parent = data["in_response_to_tweet_id"]
    if parent in brand_posts:
        return brand_posts[parent]
    for child in replies_to.get(data["tweet_id"], ()):
        if child in brand_posts:
            return brand_posts[child]
    for handle in MENTION.findall(data["text"]):
        if handle in brands:
            return handle
    lowered = {b.lower(): b for b in brands}
    for handle in MENTION.findall(data["text"]):
        if handle.lower() in lowered:
            return lowered[handle.lower()]
    return ""


MONTHS = {
    m: i
    for i, m in enumerate(["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"], start=1)
}


_ZONES: dict[str, dt.timezone] = {"+0000": dt.UTC}


def _zone(offset: str) -> dt.timezone:
    sign = -1 if offset[0] == "-" else 1
    zone = dt.timezone(sign * dt.timedelta(hours=int(offset[1:3]), minutes=int(offset[3:5])))
    if len(_ZONES) < 100:
        _ZONES[offset] = zone
    return zone


def _twitter_time(value: str) -> dt.datetime:
    # "Tue Oct 31 22:10:47 +0000 2017", read by hand: strptime is the slowest step of an import.
    _, month, day, clock, offset, year = value.split()
    hours, minutes, seconds = clock.split(":")
    if len(offset) != 5 or offset[0] not in "+-":
        raise ValueError(offset)
    zone = _ZONES.get(offset) or _zone(offset)
    return dt.datetime(int(year), MONTHS[month], int(day), int(hours), int(minutes), int(seconds), tzinfo=zone)


def parse_time(value: str) -> dt.datetime:
    value = value.strip()
    for parse in (
        _twitter_time,
        lambda v: dt.datetime.fromisoformat(v.replace("Z", "+00:00")),
    ):
        try:
            moment = parse(value)
        except (ValueError, KeyError):
            continue
        return moment if moment.tzinfo else moment.replace(tzinfo=dt.UTC)
    raise MalformedEvent(f"created_at {value[:60]!r} is not a date")


class TwcsConnector:
    """Reads imported rows. An imported account is history: it is never polled or published to."""

    network = "twitter"

    def __init__(self, config: AccountConfig):
        self.config = config

    def fetch(self, cursor: dict[str, Any]) -> FetchResult:
        return FetchResult(posts=[], cursor=cursor)

    def normalize(self, payload: dict[str, Any]) -> Post:
        try:
            external_id = str(payload["tweet_id"])
            author = str(payload["author_id"])
            text = str(payload["text"])
        except KeyError as exc:
            raise MalformedEvent(f"imported row has no {exc.args[0]}") from exc
        if not author:
            raise MalformedEvent("imported row has no author_id")
        parent = str(payload.get("in_response_to_tweet_id") or "").split(",")[0].strip()
        from_brand = not is_inbound(payload.get("inbound", "True"))
        return Post(
            external_id=external_id,
            author_handle=author,
            author_name=author if from_brand else "",
            text=text,
            created_at=parse_time(str(payload.get("created_at") or "")),
            in_reply_to_external_id=parent or None,
            from_brand=from_brand,
        )

    def publish(self, reply: Reply) -> Published:
        raise PermanentError(
            f"{self.config.handle} was imported from a file; connect the live account to reply", affects_account=False
        )


def raw_post(row: Row) -> RawPost:
    return RawPost(external_id=row.data["tweet_id"], payload=row.data)
