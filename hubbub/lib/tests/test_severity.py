"""Default complaint severity on made-up posts: one per level, plus the edges."""

import pytest

from hubbub.lib.classify import classify
from hubbub.lib.severity import SEVERITY_LABELS, severity


@pytest.mark.parametrize(
    ("text", "level"),
    [
        ("Thanks @acmeshop, the jacket is perfect!", 0),
        ("@acmebank what time do you open on Saturday?", 0),
        ("@acmeshop my parcel still hasn't arrived, any update?", 1),
        ("@acmetel no internet since yesterday, so frustrating and disappointing", 2),
        ("@acmepower you charged me twice this month and still no refund", 3),
        ("@acmeair you lost my bag and ruined my holiday. Your fault entirely, never again", 4),
        ("@acmepower refund me by Friday or my lawyer will be in touch", 4),
    ],
)
def test_one_post_per_level(text, level):
    assert severity(text) == level


def test_uses_a_classification_it_is_given():
    text = "@acmetel no internet since yesterday, so frustrating"
    assert severity(text, classify(text)) == severity(text)
    praise = classify("Thanks, lovely service!")
    assert severity(text, praise) == 0  # not a complaint, by the classification given


def test_edges():
    assert severity("") == 0
    assert severity("   ") == 0
    assert severity("😡" * 100_000) in range(5)
    assert severity("you ruined it " + "<div>" * 20_000) in range(5)
    assert SEVERITY_LABELS == ("0", "1", "2", "3", "4")
