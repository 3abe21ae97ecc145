"""Reading a VIP list: good rows kept, each bad one reported with its line."""

import pytest

from hubbub.lib.tierlist import MAX_ROWS, Rejected, TierListError, TierRow, read_tier_list

NETWORKS = {"mastodon", "twitter", "email"}


def read(text: str):
    return read_tier_list(text.splitlines(keepends=True), NETWORKS)


def test_rows_are_read_with_their_line_numbers_after_an_optional_header():
    listed = read(
        "Network, Handle, Tier\n"
        "mastodon,maria_lopes,vip\n"
        "\n"
        "# the buyers\n"
        " Twitter , @BigCorp_Buyer , Premium ,,\n"
        'email,"jo@example.com",standard\n'
    )
    assert listed.rows == [
        TierRow(2, "mastodon", "maria_lopes", "vip"),
        # The handle keeps its spelling (the network's); network and tier names are read in any case.
        TierRow(5, "twitter", "BigCorp_Buyer", "premium"),
        TierRow(6, "email", "jo@example.com", "standard"),
    ]
    assert listed.rejected == []


def test_bad_rows_are_skipped_and_reported_with_their_line():
    listed = read(
        "mastodon,ann,vip\n"
        "myspace,tom,vip\n"
        "mastodon,bob,gold\n"
        "mastodon,,vip\n"
        "mastodon,@,vip\n"
        "mastodon,carl\n"
        "mastodon,dan,vip,extra\n"
        "mastodon,ann,premium\n"
        "mastodon,ev\x00e,vip\n"
        "network,handle,tier\n"
        "twitter,ann,premium\n"
    )
    assert [row.handle for row in listed.rows] == ["ann", "ann"]
    assert [row.network for row in listed.rows] == ["mastodon", "twitter"]
    assert listed.rejected == [
        Rejected(2, "unknown network 'myspace' (known: email, mastodon, twitter)"),
        Rejected(3, "unknown tier 'gold' (known: standard, premium, vip)"),
        Rejected(4, "'' is not a handle"),
        Rejected(5, "'' is not a handle"),
        Rejected(6, "expected network,handle,tier; found 2 values"),
        Rejected(7, "expected network,handle,tier; found 4 values"),
        Rejected(8, "mastodon,ann is already on line 1"),
        Rejected(9, "'ev\\x00e' is not a handle"),
        # A header is only a header on the first line.
        Rejected(10, "unknown network 'network' (known: email, mastodon, twitter)"),
    ]


def test_each_line_is_one_row_and_a_malformed_one_is_skipped():
    listed = read(
        'mastodon,"ann\nsmith",vip\nmastodon,"bob"x,vip\nmastodon,"carl, jr",vip\nmastodon,dan\rmastodon,eve,vip\n'
    )
    assert listed.rejected == [
        Rejected(1, "not CSV (unexpected end of data)"),
        Rejected(2, "expected network,handle,tier; found 2 values"),
        Rejected(3, "not CSV (',' expected after '\"')"),
        Rejected(5, "expected network,handle,tier; found 2 values"),
    ]
    assert listed.rows == [TierRow(4, "mastodon", "carl, jr", "vip"), TierRow(6, "mastodon", "eve", "vip")]


def test_hostile_text_is_cut_short_in_reports():
    listed = read(
        "x" * 500 + ",ann,vip\n" + "mastodon,ann," + "v" * 500 + "\n" + "mastodon,ann,vip" + " " * 5000 + "\n"
    )
    assert listed.rejected[-1] == Rejected(3, "longer than 1,000 characters")
    assert all(len(r.reason) < 200 for r in listed.rejected)
    assert listed.rows == []


def test_a_list_too_long_is_refused_whole():
    with pytest.raises(TierListError, match="line 100001: more than 100,000 rows"):
        read_tier_list((f"mastodon,user{n},vip\n" for n in range(MAX_ROWS + 1)), NETWORKS)
