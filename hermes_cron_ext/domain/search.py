"""What a search of runs' output means, in one place (pure).

A log is searched line by line: **a line matches when it has every term** of the query.
Tokens are maximal runs of Unicode letters and digits, case-folded, exactly as SQLite
FTS5's ``unicode61 remove_diacritics 0`` tokenizer cuts them, so the store's full-text
index and :meth:`Query.matches` (the rule the results are checked against) agree.

A query is terms separated by spaces: a bare word (its punctuation separates tokens:
``KeyError:`` is ``keyerror``, ``foo.py`` the phrase ``foo py``), a ``"quoted phrase"``
(adjacent tokens), a word ending in ``*`` (its last token a prefix, of at least
:data:`MIN_PREFIX` letters or digits).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from hermes_cron_ext.errors import InvalidInput

_TOKEN = re.compile(r"[^\W_]+")
_TERM = re.compile(r'"([^"]*)"?(\*?)|(\S+)')
MAX_QUERY = 200
MAX_TERMS = 16
#: the shortest prefix (``w*`` would make the index merge most of its words)
MIN_PREFIX = 2
#: PostgreSQL refuses lexemes longer than this (bytes): such tokens are left out there
PG_MAX_LEXEME = 2046


def tokens(text: str) -> list[str]:
    """The tokens of *text*, lower-cased as FTS5 ``unicode61 remove_diacritics 0`` does
    (``lower``, not ``casefold``: FTS5 keeps ``ß``)."""
    return _TOKEN.findall(text.lower())


@dataclass(frozen=True)
class Term:
    """Adjacent tokens; with *prefix* the last one need only start the line's token."""

    tokens: tuple[str, ...]
    prefix: bool = False

    def found_in(self, line: list[str]) -> bool:
        n, last = len(self.tokens), len(self.tokens) - 1
        for i in range(len(line) - n + 1):
            if all(line[i + k] == t if k < last or not self.prefix
                   else line[i + k].startswith(t) for k, t in enumerate(self.tokens)):
                return True
        return False


@dataclass(frozen=True)
class Query:
    text: str
    terms: tuple[Term, ...]

    def matches(self, line: str) -> bool:
        """Whether *line* has every term (the rule search results are held to)."""
        toks = tokens(line)
        return all(term.found_in(toks) for term in self.terms)

    def fts5(self) -> str:
        """The FTS5 MATCH expression: each term a quoted phrase, ``*`` for a prefix."""
        return " AND ".join('"' + " ".join(t.tokens) + '"' + (" *" if t.prefix else "")
                            for t in self.terms)

    def tsquery(self) -> str:
        """The PostgreSQL ``tsquery`` literal: ``'a' <-> 'b' & 'c':*``."""
        return " & ".join(
            "(" + " <-> ".join(f"'{tok}'" + (":*" if t.prefix and i == len(t.tokens) - 1
                                             else "")
                               for i, tok in enumerate(t.tokens)) + ")"
            for t in self.terms)


def parse_query(text: str) -> Query:
    """The query *text* means.

    :raises InvalidInput: (field ``q``) empty, no letters or digits, longer than 200
        characters, more than 16 terms, or a prefix of one letter or digit (``w*``)
    """
    if not isinstance(text, str) or not text.strip():
        raise InvalidInput("the search is empty: give a word or a \"phrase\"", field="q")
    if len(text) > MAX_QUERY:
        raise InvalidInput(f"the search is longer than {MAX_QUERY} characters", field="q")
    terms: list[Term] = []
    for m in _TERM.finditer(text):
        if m.group(3) is not None:
            word = m.group(3)
            prefix = word.endswith("*")
            toks = tokens(word[:-1] if prefix else word)
        else:
            toks, prefix = tokens(m.group(1)), bool(m.group(2))
        if toks and prefix and len(toks[-1]) < MIN_PREFIX:
            # one character covers a large part of every log's words: the index merges
            # them all (about 1 s per 1,000 runs on SQLite)
            raise InvalidInput(f"a prefix needs at least {MIN_PREFIX} letters or digits "
                               f"before *: {m.group(0)}", field="q")
        if toks:
            terms.append(Term(tuple(toks), prefix))
    if not terms:
        raise InvalidInput("the search has no letters or digits to look for", field="q")
    if len(terms) > MAX_TERMS:
        raise InvalidInput(f"the search has more than {MAX_TERMS} terms", field="q")
    return Query(text, tuple(terms))


def tsvector(text: str) -> str:
    """A ``tsvector`` literal of *text*'s tokens at positions 1..n (PostgreSQL caps
    positions at 16383; a chunk of 8 KiB has fewer tokens)."""
    where: dict[str, list[int]] = {}
    for pos, tok in enumerate(tokens(text), 1):
        if len(tok.encode()) <= PG_MAX_LEXEME:
            where.setdefault(tok, []).append(min(pos, 16383))
    return " ".join(f"'{tok}':" + ",".join(map(str, ps[:256])) for tok, ps in where.items())
