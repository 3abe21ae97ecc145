from pathlib import Path

import pytest

from hubbub.connectors.base import AccountConfig, MalformedEvent
from hubbub.connectors.twcs import ImportFormatError, Rejected, Row, TwcsConnector, read_rows

FIXTURE = Path(__file__).parent / "fixtures" / "sample.csv"


def rows(path=FIXTURE):
    return list(read_rows(path))


def test_reads_rows_and_rejects_a_row_without_id():
    items = rows()
    assert sum(isinstance(i, Row) for i in items) == 8
    rejected = [i for i in items if isinstance(i, Rejected)]
    assert len(rejected) == 1 and "tweet_id" in rejected[0].reason


def test_float_ids_are_read_as_integers():
    by_id = {i.data["tweet_id"]: i.data for i in rows() if isinstance(i, Row)}
    assert by_id["10"]["in_response_to_tweet_id"] == "9"
    assert by_id["11"]["in_response_to_tweet_id"] == "10"


def test_quoted_text_keeps_line_breaks_and_quotes():
    by_id = {i.data["tweet_id"]: i.data for i in rows() if isinstance(i, Row)}
    assert by_id["31"]["text"] == '@shopco "quoted" and a\nline break, <script>alert(1)</script>'


def test_bare_carriage_return_inside_unquoted_text_does_not_split_the_row(tmp_path):
    path = tmp_path / "cr.csv"
    path.write_bytes(
        b"tweet_id,author_id,inbound,created_at,text,response_tweet_id,in_response_to_tweet_id\n"
        b"1,7,True,Mon Nov 06 09:00:00 +0000 2017,@acme \r\rI love it,,\n"
        b"2,acme,False,Mon Nov 06 09:01:00 +0000 2017,@7 thanks,,1\n"
    )
    items = rows(path)
    assert [i.data["tweet_id"] for i in items] == ["1", "2"]
    assert items[0].data["text"] == "@acme \n\nI love it"


def test_jsonl_with_a_broken_line(tmp_path):
    path = tmp_path / "posts.jsonl"
    path.write_text(
        '{"tweet_id": 1, "author_id": "7", "inbound": true, "created_at": "2017-11-06T09:00:00Z", "text": "hi"}\n'
        "{not json\n"
        "[1, 2]\n"
    )
    items = rows(path)
    assert isinstance(items[0], Row) and items[0].data["inbound"] == "True"
    assert [type(i) for i in items[1:]] == [Rejected, Rejected]


def test_a_file_without_the_columns_is_refused(tmp_path):
    path = tmp_path / "other.csv"
    path.write_text("a,b\n1,2\n")
    with pytest.raises(ImportFormatError):
        rows(path)


def test_normalize_reads_a_reply_from_the_brand():
    connector = TwcsConnector(AccountConfig(network="twitter", handle="acmeair"))
    by_id = {i.data["tweet_id"]: i.data for i in rows() if isinstance(i, Row)}
    post = connector.normalize(by_id["10"])
    assert post.from_brand and post.in_reply_to_external_id == "9"
    assert post.created_at.isoformat() == "2017-11-06T09:05:00+00:00"
    with pytest.raises(MalformedEvent, match="not a date"):
        connector.normalize(by_id["50"])
    with pytest.raises(MalformedEvent):
        connector.normalize({"tweet_id": "1"})
