"""A VIP list: CSV rows `network,handle,tier`, read and checked without a database.

    network,handle,tier
    mastodon,maria_lopes,vip
    twitter,@bigcorp_buyer,premium
    # a line starting with # is a comment
    email,jo@example.com,standard

The header line is optional. Handles are taken as the network spells them, less a leading @.
Each line is one row (a handle never holds a line break), so a bad row is rejected with its own
line number and the rest are still read; a file of too many rows is refused whole (TierListError).
"""

from __future__ import annotations

import csv
import unicodedata
from collections.abc import Collection, Iterable
from dataclasses import dataclass, field

from hubbub.lib.priority import TIERS

MAX_ROWS = 100_000
MAX_LINE = 1000
MAX_HANDLE = 255  # Identity.handle
HEADER = ["network", "handle", "tier"]


class TierListError(ValueError):
    """The file cannot be read as a tier list at all; nothing in it is used."""


@dataclass(frozen=True)
class TierRow:
    line: int
    network: str
    handle: str
    tier: str


@dataclass(frozen=True)
class Rejected:
    line: int
    reason: str


@dataclass
class TierList:
    rows: list[TierRow] = field(default_factory=list)
    rejected: list[Rejected] = field(default_factory=list)


def read_tier_list(lines: Iterable[str], networks: Collection[str]) -> TierList:
    """The rows of a tier list, each (network, handle) once; `networks` are the known network names."""
    result = TierList()
    seen: dict[tuple[str, str], int] = {}
    for line, text in enumerate(lines, 1):
        if len(text) > MAX_LINE:
            # Also keeps every value under the csv module's field limit, which is process-wide.
            result.rejected.append(Rejected(line, f"longer than {MAX_LINE:,} characters"))
            continue
        try:
            cells = [cell.strip() for cell in next(csv.reader([text], strict=True), [])]
        except csv.Error as exc:
            result.rejected.append(Rejected(line, f"not CSV ({exc})"))
            continue
        if not any(cells) or cells[0].startswith("#"):
            continue
        if not result.rows and not result.rejected and [c.lower() for c in cells] == HEADER:
            continue
        if len(result.rows) + len(result.rejected) >= MAX_ROWS:
            raise TierListError(f"line {line}: more than {MAX_ROWS:,} rows; split the list")
        row = _row(line, cells, networks)
        if isinstance(row, Rejected):
            result.rejected.append(row)
        elif (row.network, row.handle) in seen:
            first = seen[(row.network, row.handle)]
            result.rejected.append(Rejected(line, f"{row.network},{row.handle} is already on line {first}"))
        else:
            seen[(row.network, row.handle)] = line
            result.rows.append(row)
    return result


def _row(line: int, cells: list[str], networks: Collection[str]) -> TierRow | Rejected:
    while len(cells) > 3 and not cells[-1]:
        cells.pop()  # trailing commas, as spreadsheets write them
    if len(cells) != 3:
        return Rejected(line, f"expected network,handle,tier; found {len(cells)} values")
    network, handle, tier = cells[0].lower(), cells[1].removeprefix("@").strip(), cells[2].lower()
    if network not in networks:
        return Rejected(line, f"unknown network {network[:40]!r} (known: {', '.join(sorted(networks))})")
    if not handle or len(handle) > MAX_HANDLE or any(unicodedata.category(c)[0] == "C" for c in handle):
        return Rejected(line, f"{handle[:40]!r} is not a handle")
    if tier not in TIERS:
        return Rejected(line, f"unknown tier {tier[:40]!r} (known: {', '.join(TIERS)})")
    return TierRow(line, network, handle, tier)
