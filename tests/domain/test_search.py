"""The search rule: tokens as SQLite FTS5's unicode61 cuts them, a line matching every term."""

from __future__ import annotations

import sqlite3

import pytest

from hermes_cron_ext.domain.search import parse_query, tokens, tsvector
from hermes_cron_ext.errors import InvalidInput


def test_tokens_are_letters_and_digits_casefolded():
    assert tokens("KeyError: 'x_y' in /a/b.py:12 Größe") == [
        "keyerror", "x", "y", "in", "a", "b", "py", "12", "größe"]


@pytest.mark.parametrize("q, line, hit", [
    ("keyerror", "KeyError: 'x'", True),
    ("KeyError:", "raise KeyError('x')", True),
    ("KeyError:", "KeyErrors here", False),
    ('"connection refused"', "error: Connection refused by peer", True),
    ('"connection refused"', "refused connection", False),
    ("conn*", "Connecting...", True),
    ("conn*", "disconnect", False),
    ("foo.py", "File foo/py", True),
    ("foo.py", "foo bar py", False),
    ("timeout retry", "retry after timeout", True),
    ("timeout retry", "timeout only", False),
    ('"foo ba"*', "foo bar", True),
])
def test_a_line_matches_when_it_has_every_term(q, line, hit):
    assert parse_query(q).matches(line) is hit


@pytest.mark.parametrize("q", ["", "   ", "::", "x" * 201, " ".join(f"w{i}" for i in range(17))])
def test_bad_queries_are_refused_with_field_q(q):
    with pytest.raises(InvalidInput) as exc:
        parse_query(q)
    assert exc.value.field == "q"
    assert "\n" not in str(exc.value)


@pytest.mark.parametrize("q, word", [("w*", "w*"), ("error W*", "W*"), ('"w"*', '"w"*'),
                                     ("foo.b*", "foo.b*"), ("7*", "7*")])
def test_a_prefix_needs_two_letters_or_digits(q, word):
    """One character would make the index merge most of its words (about 1 s per 1,000
    runs): refused, naming the term."""
    with pytest.raises(InvalidInput) as exc:
        parse_query(q)
    assert exc.value.field == "q"
    assert str(exc.value) == f"a prefix needs at least 2 letters or digits before *: {word}"
    assert parse_query("wo*").matches("World") and parse_query("foo.ba*").matches("foo bar")
    assert parse_query("x * y").matches("y x")  # a lone * is no prefix


def test_expressions_for_fts5_and_tsquery():
    q = parse_query('KeyError: "a b" pre*')
    assert q.fts5() == '"keyerror" AND "a b" AND "pre" *'
    assert q.tsquery() == "('keyerror') & ('a' <-> 'b') & ('pre':*)"
    assert q.text == 'KeyError: "a b" pre*'
    assert tsvector("a b a") == "'a':1,3 'b':2"


def test_tokens_agree_with_sqlite_fts5():
    """What SQLite's tokenizer makes of a line is what ``tokens`` makes of it."""
    db = sqlite3.connect(":memory:")
    db.execute("CREATE VIRTUAL TABLE t USING fts5(x, tokenize='unicode61 remove_diacritics 0')")
    db.execute("CREATE VIRTUAL TABLE v USING fts5vocab(t, 'instance')")
    line = ("Traceback (most recent call): KeyError: 'user_id' at /srv/app.py:42 "
            "— ÉTÉ naïve Straße 3.14")
    db.execute("INSERT INTO t (x) VALUES (?)", (line,))
    got = [r[0] for r in db.execute("SELECT term FROM v ORDER BY offset")]
    assert got == tokens(line)
