"""``::metric`` lines (domain/metrics.py): what a run's output reports."""

from __future__ import annotations

import math

import pytest

from hermes_cron_ext.domain.metrics import MAX_PER_RUN, Metric, Metrics, metric_line


def read(*chunks: bytes) -> Metrics:
    m = Metrics()
    for chunk in chunks:
        m.feed(chunk)
    m.close()
    return m


def test_lines_report_metrics_with_units_and_the_last_value_wins():
    m = read(b"starting\n::metric rows=1234\n::metric latency=0.25 s\n"
             b"::metric rows=1300\ndone\n")
    assert m.values == {"rows": Metric("rows", 1300.0), "latency": Metric("latency", 0.25, "s")}


def test_a_line_split_across_chunks_and_a_last_line_without_newline_count():
    m = read(b"::metr", b"ic rows=", b"12\n::metric size=1.5e3 B")
    assert m.values["rows"].value == 12.0
    assert m.values["size"] == Metric("size", 1500.0, "B")


def test_carriage_returns_end_lines_too():
    assert read(b"::metric a=1\r::metric b=2\r\n").values.keys() == {"a", "b"}


@pytest.mark.parametrize("line", [
    b"echo ::metric rows=5\n",          # not at the start of a line
    b"::metric rows=five\n",            # not a number
    b"::metric rows=\n",
    b"::metric 9rows=5\n",              # not a name
    b"::metric rows=5 some words\n",    # a unit is one word
    b"::metric duration=5\n",           # built in: measured, never reported
    b"::metric rows=1e999\n",           # not finite
])
def test_lines_that_are_not_metrics_are_output_only(line):
    assert read(line).values == {}


def test_a_run_keeps_at_most_max_per_run_names():
    m = read(b"".join(b"::metric m%d=%d\n" % (i, i) for i in range(MAX_PER_RUN + 5)))
    assert len(m.values) == MAX_PER_RUN and m.dropped == 5
    m2 = read(b"".join(b"::metric m%d=%d\n" % (i, i) for i in range(MAX_PER_RUN)),
              b"::metric m0=42\n")  # a known name is still updated
    assert m2.values["m0"].value == 42 and m2.dropped == 0


def test_metric_line_is_what_the_reader_reads_back():
    for name, value, unit in (("rows", 1234, ""), ("load.avg", 0.125, ""),
                              ("size-max", 1.5e9, "B"), ("share", 12.5, "%")):
        m = read(metric_line(name, value, unit).encode() + b"\n")
        assert m.values[name] == Metric(name, float(value), unit)


@pytest.mark.parametrize("name, value, unit, problem", [
    ("9rows", 1, "", "metric name"),
    ("rows rows", 1, "", "metric name"),
    ("duration", 1, "", "built in"),
    ("rows", math.nan, "", "not a finite number"),
    ("rows", "12", "", "not a finite number"),
    ("rows", True, "", "not a finite number"),
    ("rows", 1, "per day", "unit"),
])
def test_metric_line_refuses_what_could_not_be_read_back(name, value, unit, problem):
    with pytest.raises(ValueError, match=problem):
        metric_line(name, value, unit)


def test_a_python_job_reports_with_hermes_cron_ext_metric():
    import subprocess
    import sys

    out = subprocess.run(
        [sys.executable, "-c", "import hermes_cron_ext as h; print('working');"
         "h.metric('rows', 1234); h.metric('ratio', 0.5, '%')"],
        capture_output=True, check=True).stdout
    assert read(out).values == {"rows": Metric("rows", 1234.0),
                                "ratio": Metric("ratio", 0.5, "%")}
