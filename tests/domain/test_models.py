"""Model helpers every API answer goes through."""

from __future__ import annotations

import dataclasses
import random
from datetime import UTC, datetime

from hermes_cron_ext.domain.models import (
    EVENT_JSON,
    JOB_JSON,
    RUN_JSON,
    TICKER_JSON,
    Event,
    Job,
    Policy,
    Run,
    Ticker,
    iso,
    parse_iso,
)


def test_iso_matches_datetime_to_the_millisecond():
    rng = random.Random(7)
    instants = [0.0, 1.9999999, 1_800_000_000.9995, 1_800_000_000.0009999,
                1_800_000_000.9999996, 951_782_400.0]  # ... and 2000-02-29
    instants += [rng.uniform(0, 4e9) for _ in range(20_000)]
    for ts in instants:
        want = datetime.fromtimestamp(ts, tz=UTC).isoformat(
            timespec="milliseconds").replace("+00:00", "Z")
        assert iso(ts) == want, ts
    assert iso(None) is None
    assert parse_iso(iso(1_800_000_000.25)) == 1_800_000_000.25


def _full_job() -> Job:
    """A job with every field set, as a store reads one back."""
    return Job(
        id="j_0000000000000001", name="etl", kind="notebook", schedule=None, timezone="UTC",
        command="report.ipynb", code=None, interpreter="/usr/bin/python3", cwd="/srv",
        env={"A": "1", "TOKEN": "s3cret"}, secret_env=["TOKEN"], parameters={"n": 3},
        kernel="python3", description="nightly", executor="dask://sched:8786",
        after=[{"job": "j_0000000000000002", "on": "failure", "name": "extract"}],
        policy=Policy(timeout=90.0, keep_runs=7, max_output=1 << 20), state="blocked",
        state_reason="5 failures in a row", next_run_at=1_800_000_000.0,
        last_run={"id": "r_0000000000000001", "status": "failed", "started_at": 1.0,
                  "finished_at": 2.0, "exit_code": 3, "duration": 1.0, "reason": None,
                  "trigger": "upstream", "attempt": 1},
        consecutive_failures=5, running_count=0, created_at=1.0, updated_at=2.0, version=4)


def test_job_to_json_returns_exactly_its_declared_fields():
    """``JOB_JSON`` (what the OpenAPI ``Job`` and the panel's ``IJob`` are generated
    from) is what ``to_json`` returns: no field more, none less, in its order."""
    for job in (_full_job(), Job(id="j_0000000000000003", name="x", kind="command",
                                 schedule="@daily", timezone="UTC", command="true")):
        out = job.to_json()
        assert list(out) == list(JOB_JSON)
        assert list(out["policy"]) == [f.name for f in dataclasses.fields(Policy)]
    assert _full_job().to_json()["env"]["TOKEN"] == "********"


def test_run_to_json_returns_exactly_its_declared_fields():
    run = Run(id="r_0000000000000001", job_id="j_0000000000000001", status="succeeded",
              trigger="upstream", scheduled_for=1.0, started_at=2.0, finished_at=3.0,
              exit_code=0, backfill_id="b_1", parameters={"n": 1},
              spec={"job_name": "etl", "upstream": [{"job_id": "j_2", "job": "extract",
                                                     "run_id": "r_2", "status": "succeeded",
                                                     "exit_code": 0}]})
    for r in (run, Run(id="r_0000000000000002", job_id="j_1", status="queued",
                       trigger="manual")):
        assert list(r.to_json()) == list(RUN_JSON)


def test_event_and_ticker_to_json_return_exactly_their_declared_fields():
    """``EVENT_JSON`` and ``TICKER_JSON`` (the OpenAPI ``Event`` and ``Ticker``, the
    panel's ``IEvent`` and ``ITicker``) are what their ``to_json`` return, in order."""
    for event in (Event(seq=3, at=1.0, type="run.started", job_id="j_1", run_id="r_1",
                        data={"attempt": 1}), Event(seq=4, at=2.0, type="store.reset")):
        assert list(event.to_json()) == list(EVENT_JSON)
    ticker = Ticker(id="t_1", kind="daemon", host="elsewhere.example", pid=12,
                    started_at=1.0, heartbeat_at=2.0, last_tick_at=2.0, proc_start=99)
    assert list(ticker.to_json(at=3.0)) == list(TICKER_JSON)
