"""The generated files are what the declarations make now, and what they say holds.

``openapi.json``'s job, run, policy, option, page, event, ticker, status and backfill
schemas and the panel's ``labextension/src/generated.ts`` are generated
(``server/openapi.py``) from the options schema (``domain/options.py``) and the response
tables next to each ``to_json`` (``domain/models.py``; ``STATUS_JSON`` beside
``status_report`` in ``ops/local.py``). Changing either without regenerating fails here.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys

import pytest

from hermes_cron_ext.domain import options
from hermes_cron_ext.domain.models import (
    BACKFILL_JSON,
    EVENT_JSON,
    JOB_JSON,
    RUN_JSON,
    TICKER_JSON,
    Page,
    Run,
)
from hermes_cron_ext.ops.local import (
    METRIC_POINT_JSON,
    METRIC_SERIES_JSON,
    METRICS_JSON,
    STATUS_JSON,
    Operations,
)
from hermes_cron_ext.server import openapi
from tests.domain.test_models import _full_job

FIX = "run: python -m hermes_cron_ext.server.openapi --write"


def test_the_generated_files_are_not_stale():
    """Regenerated in memory, each file is byte for byte the committed one."""
    for path, text in openapi.generated().items():
        with open(path, encoding="utf-8") as f:
            assert f.read() == text, f"{path} is stale: {FIX}"
    assert openapi.TS_PATH.exists()  # the panel's types are checked too (a checkout)
    assert openapi.stale() == []


def test_check_says_so_on_the_command_line():
    proc = subprocess.run([sys.executable, "-m", "hermes_cron_ext.server.openapi", "--check"],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr


def test_the_served_document_is_the_committed_one():
    with open(openapi.PATH, encoding="utf-8") as f:
        assert json.loads(openapi.document()) == json.load(f)


def _validator(name: str):
    jsonschema = pytest.importorskip("jsonschema")
    doc = json.loads(openapi.document())
    schema = {"$ref": f"#/components/schemas/{name}", "components": doc["components"]}
    return jsonschema.Draft202012Validator(
        schema, format_checker=jsonschema.Draft202012Validator.FORMAT_CHECKER)


def _run() -> Run:
    return Run(id="r_0000000000000001", job_id="j_0000000000000001", status="succeeded",
               trigger="upstream", scheduled_for=1.0, queued_at=1.0, started_at=2.0,
               finished_at=3.0, exit_code=0, heartbeat_at=2.5, pid=10, host="h",
               output_bytes=12, parameters={"n": 1},
               spec={"job_name": "etl", "upstream": [{"job_id": "j_2", "job": "extract",
                                                      "run_id": "r_2", "status": "succeeded",
                                                      "exit_code": 0}]})


def test_jobs_runs_and_pages_match_their_generated_schemas():
    job = _full_job().to_json()
    _validator("Job").validate(job)
    _validator("Policy").validate(job["policy"])
    _validator("Run").validate(_run().to_json())
    _validator("JobPage").validate({"jobs": [job], "cursor": None})
    page = Page([_run(), Run(id="r_2", job_id="j_1", status="queued", trigger="manual")], "c")
    _validator("RunPage").validate({"runs": [r.to_json() for r in page.items],
                                    "cursor": page.cursor})
    for o in options.OPTIONS:
        _validator("Option").validate(o.to_json())
    # and the schemas say something: a wrong value is refused
    assert not _validator("Job").is_valid({**job, "kind": "shell"})
    assert not _validator("Policy").is_valid({**job["policy"], "retries": -1})
    assert not _validator("Job").is_valid({k: v for k, v in job.items() if k != "version"})


def test_events_tickers_status_and_backfills_match_their_generated_schemas(tmp_path):
    """Answers of a real store (no ticker runs: nothing starts) against the schemas."""
    ops = Operations(str(tmp_path / "cron.db"))
    try:
        ops.create({"name": "daily", "schedule": "0 3 * * *", "timezone": "UTC",
                    "command": "true"})
        ops.store.register_ticker("daemon", "elsewhere.example", 12)
        status = ops.status()
        assert list(status) == list(STATUS_JSON)
        assert status["tickers"]
        _validator("Status").validate(status)
        _validator("Status").validate({**status, "ticker_fault": {"since": 1.0,
                                                                   "error": "disk full"}})
        for ticker in status["tickers"]:
            _validator("Ticker").validate(ticker)
        events = ops.store.events_since(0)
        assert events
        for event in events:
            _validator("Event").validate(event.to_json())
        dry = ops.backfill("daily", "2026-01-01", "2026-01-03", max_parallel=2,
                           dry_run=True)
        _validator("Backfill").validate(dry)
        assert set(dry) <= set(BACKFILL_JSON)
        job = ops.store.get_job("daily")
        made = ops.store.create_backfill(job.id, [1_767_236_400.0 + 86400 * i
                                                  for i in range(3)], 1)
        cancelled = ops.store.cancel_backfill(made["id"])
        for answer in (made, cancelled, *ops.backfills("daily")):
            _validator("Backfill").validate(answer)
            assert set(answer) | {"next", "warning"} == set(BACKFILL_JSON), answer
        assert not _validator("Backfill").is_valid({**made, "state": "paused"})
        assert not _validator("Status").is_valid({k: v for k, v in status.items()
                                                  if k != "ticking"})
    finally:
        ops.close()


def _block(ts: str, name: str) -> str:
    match = re.search(rf"export interface {name} \{{\n(.*?)\n\}}", ts, re.S)
    assert match, name
    return match.group(1)


def test_the_panel_types_have_every_field():
    ts = openapi.typescript()
    fields = {name: set(re.findall(r"^  (\w+)\??:", _block(ts, name), re.M))
              for name in ("IJob", "IRun", "IPolicy", "IOption", "IEvent", "ITicker",
                           "IStatus", "IBackfill")}
    assert fields["IJob"] == set(JOB_JSON) | {"warning"}
    assert fields["IRun"] == set(RUN_JSON)
    assert fields["IPolicy"] == options.POLICY_FIELDS
    assert fields["IOption"] == set(options.OPTION_JSON)
    assert fields["IEvent"] == set(EVENT_JSON)
    assert fields["ITicker"] == set(TICKER_JSON)
    assert fields["IStatus"] == set(STATUS_JSON)
    assert fields["IBackfill"] == set(BACKFILL_JSON)
    assert set(re.findall(r"^  (\w+)\??:", _block(ts, "IMetrics"), re.M)) == set(METRICS_JSON)
    assert set(re.findall(r"^  (\w+)\??:", _block(ts, "IMetricSeries"), re.M)) == set(
        METRIC_SERIES_JSON)
    assert set(re.findall(r"^  (\w+)\??:", _block(ts, "IMetricPoint"), re.M)) == set(
        METRIC_POINT_JSON)
    assert "  points: IMetricPoint[];" in _block(ts, "IMetricSeries")
    assert "  tickers: ITicker[];" in _block(ts, "IStatus")
    assert "  executor: string | null;" in _block(ts, "IJob")
    assert "  max_output: number | null;" in _block(ts, "IPolicy")
    assert "  overlap: Overlap;" in _block(ts, "IPolicy")
    # the form's options, as the server lists them
    listed = json.loads(openapi.options_json())["options"]
    assert "export const OPTIONS: IOption[] = [\n" in ts
    for option in listed:
        assert f"  {json.dumps(option, ensure_ascii=False)},\n" in ts


def test_alerts_reach_the_generated_types():
    """The ``alerts`` option (a policy: a list of rules) and a run's fired ``alerts``."""
    with open(openapi.PATH) as f:
        schemas = json.load(f)["components"]["schemas"]
    assert schemas["Policy"]["properties"]["alerts"]["type"] == "array"
    assert schemas["Run"]["properties"]["alerts"]["type"] == ["array", "null"]
    generated = openapi.TS_PATH.read_text()
    assert "  alerts: string[];" in generated and '"flag": "--alert"' in generated
