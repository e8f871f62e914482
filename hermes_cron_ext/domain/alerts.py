"""Alert rules: when a run's metric says something is wrong.

A rule is the *alert condition*, written as a comparison::

    rows < 1000
    duration > 2 * median(20)
    peak_memory >= 1.5G
    errors > mean(50) + 3 * stddev(50)

Its subject is a metric the run reported (``::metric rows=...``) or a built-in one
(``metrics.BUILTIN``: ``duration``, ``exit_code``, ``output_bytes``, ``cpu_seconds``,
``peak_memory``). The other side is arithmetic (``+ - * /``, parentheses) of numbers,
with an optional unit (``ms s m h d`` for times, in seconds; ``k M G``, ``KB MB GB``,
``KiB MiB GiB`` for sizes, in bytes), and statistics of the subject over the job's
last *N* runs before this one: ``median(N)``, ``mean(N)``, ``stddev(N)`` (sample),
``min(N)``, ``max(N)``, ``pNN(N)`` (a percentile, ``p90(20)``).

Pure: :func:`parse_rule` checks a rule when a job is saved (the error names the rule
and the problem); :meth:`Rule.check` decides for one run, given its value and the
history, when the run ends. A statistic over fewer than :data:`MIN_HISTORY` earlier
values (or fewer than *N*, when *N* is smaller) is not known yet: the rule is then
neither firing nor passing, so a new job is not alerted on its first runs.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

from hermes_cron_ext.domain.metrics import NAME

#: how many earlier values a statistic needs before a rule using it counts
MIN_HISTORY = 3
#: the longest history a statistic may ask for
MAX_WINDOW = 1000
#: how long a rule may be
MAX_LENGTH = 200
#: the most rules a job carries
MAX_RULES = 20

OPERATORS = ("<=", ">=", "==", "!=", "<", ">")
STATISTICS = ("median", "mean", "stddev", "std", "min", "max")
UNITS: dict[str, float] = {
    "ms": 0.001, "s": 1, "m": 60, "min": 60, "h": 3600, "d": 86400,
    "B": 1, "k": 1e3, "K": 1e3, "KB": 1e3, "M": 1e6, "MB": 1e6, "G": 1e9, "GB": 1e9,
    "KiB": 1024, "MiB": 1024 ** 2, "GiB": 1024 ** 3, "%": 1,
}

_TOKEN = re.compile(
    r"\s*(?:(?P<num>(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][-+]?\d+)?)(?:[ \t]*(?P<unit>[A-Za-z%]+))?"
    r"|(?P<op><=|>=|==|!=|<|>)|(?P<punct>[-+*/()])|(?P<name>" + NAME + r"))")

Outcome = Literal["fired", "passed", "unknown"]


class RuleError(ValueError):
    """A rule that cannot be used; its message names the rule and the problem."""


# -- the expression tree ------------------------------------------------------------------
@dataclass(frozen=True)
class Number:
    value: float
    text: str

    def window(self) -> int:
        return 0


@dataclass(frozen=True)
class Statistic:
    name: str  # median, mean, stddev, min, max, or pNN
    n: int

    @property
    def text(self) -> str:
        return f"{self.name}({self.n})"

    def window(self) -> int:
        return self.n


@dataclass(frozen=True)
class Binary:
    op: str
    left: Expr
    right: Expr

    @property
    def text(self) -> str:
        return f"{_text(self.left, self.op, False)} {self.op} {_text(self.right, self.op, True)}"

    def window(self) -> int:
        return max(self.left.window(), self.right.window())


@dataclass(frozen=True)
class Negative:
    operand: Expr

    @property
    def text(self) -> str:
        return f"-{_text(self.operand, '*', True)}"

    def window(self) -> int:
        return self.operand.window()


Expr = Number | Statistic | Binary | Negative


_PRECEDENCE = {"+": 1, "-": 1, "*": 2, "/": 2}


def _text(e: Expr, parent: str, right: bool) -> str:
    """*e* written as an operand of *parent*: in parentheses where they matter."""
    if isinstance(e, Binary) and (
            _PRECEDENCE[e.op] < _PRECEDENCE[parent]
            or right and _PRECEDENCE[e.op] == _PRECEDENCE[parent] and parent in "-/"):
        return f"({e.text})"
    return e.text


# -- statistics ---------------------------------------------------------------------------
def statistic(name: str, values: Sequence[float]) -> float | None:
    """*name* of *values* (None when it is not defined: no values, or one for stddev)."""
    if not values:
        return None
    if name == "mean":
        return math.fsum(values) / len(values)
    if name in ("stddev", "std"):
        if len(values) < 2:
            return None
        mean = math.fsum(values) / len(values)
        return math.sqrt(math.fsum((v - mean) ** 2 for v in values) / (len(values) - 1))
    if name == "min":
        return min(values)
    if name == "max":
        return max(values)
    q = 50.0 if name == "median" else float(name[1:])
    ordered = sorted(values)
    pos = (len(ordered) - 1) * q / 100.0  # linear between closest ranks, as numpy does
    low = math.floor(pos)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (pos - low)


# -- parsing ------------------------------------------------------------------------------
class _Parser:
    def __init__(self, text: str):
        self.text = text
        self.tokens: list[tuple[str, str, str | None]] = []
        pos = 0
        while pos < len(text):
            if text[pos:].strip() == "":
                break
            m = _TOKEN.match(text, pos)
            if m is None or m.end() == pos:
                raise self.error(f"unexpected {text[pos:].strip()[:12]!r}")
            kind = m.lastgroup if m.lastgroup != "unit" else "num"
            assert kind is not None
            self.tokens.append((kind, m.group(kind).strip() if m.group(kind) else "",
                                m.group("unit")))
            pos = m.end()
        self.i = 0

    def error(self, problem: str) -> RuleError:
        return RuleError(f"alert rule {self.text!r}: {problem}")

    def peek(self) -> tuple[str, str, str | None] | None:
        return self.tokens[self.i] if self.i < len(self.tokens) else None

    def take(self) -> tuple[str, str, str | None]:
        token = self.peek()
        if token is None:
            raise self.error("it ends too soon")
        self.i += 1
        return token

    def expr(self) -> Expr:
        left = self.term()
        while (t := self.peek()) is not None and t[1] in ("+", "-") and t[0] == "punct":
            self.i += 1
            left = Binary(t[1], left, self.term())
        return left

    def term(self) -> Expr:
        left = self.factor()
        while (t := self.peek()) is not None and t[1] in ("*", "/") and t[0] == "punct":
            self.i += 1
            left = Binary(t[1], left, self.factor())
        return left

    def factor(self) -> Expr:
        kind, text, unit = self.take()
        if kind == "num":
            if unit is not None and unit not in UNITS:
                raise self.error(f"unknown unit {unit!r} (units: {', '.join(UNITS)})")
            value = float(text) * (UNITS[unit] if unit else 1)
            if not math.isfinite(value):
                raise self.error(f"{text}{unit or ''} is not a finite number")
            return Number(value, f"{text}{unit or ''}")
        if kind == "punct" and text == "(":
            inner = self.expr()
            if self.peek() is None or self.take()[1] != ")":
                raise self.error("a '(' is not closed")
            return inner
        if kind == "punct" and text == "-":
            return Negative(self.factor())
        if kind == "name":
            return self.stat(text)
        raise self.error(f"expected a number or a statistic, not {text!r}")

    def stat(self, name: str) -> Statistic:
        if name not in STATISTICS and not re.fullmatch(r"p(\d{1,2}(?:\.\d+)?|100)", name):
            raise self.error(f"{name!r} is not a statistic (use median, mean, stddev, min, "
                             "max or pNN, e.g. p90, each of the last N runs: median(20))")
        if self.peek() is None or self.take()[1] != "(":
            raise self.error(f"{name} takes the number of earlier runs: {name}(20)")
        kind, text, unit = self.take()
        if kind != "num" or unit or not text.isdigit() or not 1 <= int(text) <= MAX_WINDOW:
            raise self.error(f"{name}(N): N is a whole number of runs from 1 to {MAX_WINDOW}")
        if self.take()[1] != ")":
            raise self.error(f"{name}({text} is not closed")
        return Statistic("stddev" if name == "std" else name, int(text))


@dataclass(frozen=True)
class Check:
    """What a rule says of one run: *outcome*, and a line for people (the values)."""

    outcome: Outcome
    message: str


@dataclass(frozen=True)
class Rule:
    """A parsed alert rule (see the module docstring)."""

    text: str
    subject: str
    op: str
    bound: Expr

    @property
    def window(self) -> int:
        """How many earlier runs' values its statistics look at (0: none)."""
        return self.bound.window()

    def check(self, value: float | None, history: Sequence[float]) -> Check:
        """Whether the rule fires for a run whose subject is *value* (None: the run did
        not report it), given the subject's values in the job's earlier runs, newest
        first. A metric a rule watches and the run did not report fires: a job that
        stops reporting is as wrong as one that reports too little."""
        if value is None:
            return Check("fired", f"{self.subject} was not reported (rule: {self.text})")
        try:
            bound = self._value(self.bound, history)
        except _Unknown as exc:
            return Check("unknown", f"{self.text}: {exc}")
        fired = {"<": value < bound, "<=": value <= bound, ">": value > bound,
                 ">=": value >= bound, "==": value == bound, "!=": value != bound}[self.op]
        shown = self.bound.text if isinstance(self.bound, Number) else \
            f"{self.bound.text} = {_number(bound)}"
        return Check("fired" if fired else "passed",
                     f"{self.subject} = {_number(value)} {self.op if fired else _NOT[self.op]} "
                     f"{shown}")

    def _value(self, e: Expr, history: Sequence[float]) -> float:
        if isinstance(e, Number):
            return e.value
        if isinstance(e, Negative):
            return -self._value(e.operand, history)
        if isinstance(e, Statistic):
            window = history[:e.n]
            if len(window) < min(MIN_HISTORY, e.n):
                raise _Unknown(f"{e.text} needs {min(MIN_HISTORY, e.n)} earlier runs "
                               f"with {self.subject}, there are {len(window)}")
            result = statistic(e.name, window)
            if result is None:
                raise _Unknown(f"{e.text} is not defined for {len(window)} value(s)")
            return result
        left, right = self._value(e.left, history), self._value(e.right, history)
        if e.op == "/" and right == 0:
            raise _Unknown(f"{e.text} divides by zero")
        return {"+": left + right, "-": left - right, "*": left * right,
                "/": left / right if right else math.nan}[e.op]


class _Unknown(Exception):
    pass


_NOT = {"<": ">=", "<=": ">", ">": "<=", ">=": "<", "==": "!=", "!=": "=="}


def _number(x: float) -> str:
    return f"{x:.6g}"


def parse_rule(text: str) -> Rule:
    """The rule *text* says.

    :raises RuleError: naming the rule and what is wrong with it."""
    if not isinstance(text, str) or not text.strip():
        raise RuleError("an alert rule is a comparison, e.g. 'rows < 1000' or "
                        "'duration > 2 * median(20)'")
    text = text.strip()
    if len(text) > MAX_LENGTH:
        raise RuleError(f"alert rule {text[:40]!r}...: longer than {MAX_LENGTH} characters")
    p = _Parser(text)
    kind, subject, _ = p.take()
    if kind != "name":
        raise p.error("it starts with the metric it watches, e.g. 'rows < 1000'")
    if p.peek() is not None and p.peek()[1] == "(":  # type: ignore[index]
        raise p.error(f"it starts with the metric it watches, not a statistic ({subject}(...))")
    kind, op, _ = p.take()
    if kind != "op":
        raise p.error(f"after {subject!r} comes a comparison: {', '.join(OPERATORS)}")
    bound = p.expr()
    if p.peek() is not None:
        raise p.error(f"unexpected {p.peek()[1]!r} after the comparison")  # type: ignore[index]
    return Rule(text, subject, op, bound)


def parse_rules(texts: Sequence[str]) -> list[Rule]:
    """Every rule of a job, checked when it is saved.

    :raises RuleError: the first bad rule, or too many."""
    if len(texts) > MAX_RULES:
        raise RuleError(f"a job carries at most {MAX_RULES} alert rules, not {len(texts)}")
    return [parse_rule(t) for t in texts]


#: the final statuses whose runs a job's rules are checked for (not a skipped slot, not
#: a cancelled run: neither says anything about the job's data or time)
CHECKED_STATUSES = frozenset({"succeeded", "failed", "timed_out", "lost"})


@dataclass(frozen=True)
class Verdict:
    """What a job's rules say of one run: the rules that fired (``{"rule", "message"}``,
    as the run keeps them) and how many passed; ``unknown`` ones are neither."""

    fired: list[dict[str, str]]
    passed: int

    @property
    def recovers(self) -> bool:
        """After an alerting run, this one ends the alert: none fired, one passed."""
        return not self.fired and self.passed > 0


def usable_rules(texts: Sequence[str]) -> list[Rule]:
    """A job's stored rules, parsed; one this version cannot read is left out (they were
    checked when saved), so a run's end never fails on a rule."""
    out = []
    for text in texts:
        try:
            out.append(parse_rule(text))
        except RuleError:
            continue
    return out


def judge(rules: Sequence[Rule], values: dict[str, float],
          history: dict[tuple[str, int], Sequence[float]]) -> Verdict:
    """*rules* for one run: *values* are the run's metrics by name, *history* each
    ``(subject, window)``'s earlier values, newest first (absent: none)."""
    fired: list[dict[str, str]] = []
    passed = 0
    for rule in rules:
        check = rule.check(values.get(rule.subject),
                           history.get((rule.subject, rule.window), ()))
        if check.outcome == "fired":
            fired.append({"rule": rule.text, "message": check.message})
        elif check.outcome == "passed":
            passed += 1
    return Verdict(fired, passed)
