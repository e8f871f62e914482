"""A real run's output is searchable: indexed at each heartbeat while the run is still
going, and once it ends; a capped log is indexed as the log holds it (head, the cut note,
tail). Real supervisor processes on SQLite and PostgreSQL."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from hermes_cron_ext.domain.search import parse_query
from hermes_cron_ext.runtime.supervisor import SUPERVISE_DB_ENV
from tests.conftest import BACKENDS, make_job, wait_for
from tests.store.test_views import _found, _grep

pytestmark = pytest.mark.parametrize("store_backend", BACKENDS, indirect=True)


def _supervise(store, run) -> subprocess.Popen:
    env = {**os.environ, "HERMES_CRON_HEARTBEAT": "0.2", SUPERVISE_DB_ENV: store.url}
    return subprocess.Popen([sys.executable, "-m", "hermes_cron_ext.runtime.supervisor",
                             run.id], env=env, start_new_session=True)


def _hits(store, text: str) -> list[str]:
    return [h["run_id"] for h in store.search_output(parse_query(text)).items]


def test_output_is_searchable_while_the_run_is_running(real_store, tmp_path):
    go = tmp_path / "go"
    code = ("import os, sys, time\n"
            "print('started: KeyError: alpha_marker in stage', flush=True)\n"
            f"while not os.path.exists({str(go)!r}): time.sleep(0.05)\n"
            "print('Traceback (most recent call last): beta_marker')\n"
            "sys.stdout.write('no newline at the end gamma')\n"
            "sys.exit(2)\n")
    make_job(real_store, "live", "@yearly", kind="python", code=code, command=None)
    run = real_store.request_run("live")
    proc = _supervise(real_store, run)
    try:
        wait_for(lambda: _hits(real_store, "alpha_marker") == [run.id], timeout=30,
                 what="the first line indexed at a heartbeat")
        assert real_store.get_run(run.id).status == "running"
        assert _hits(real_store, '"KeyError: alpha"') == [run.id]
        assert _hits(real_store, "beta_marker") == []
        go.touch()
        proc.wait(30)
    finally:
        go.touch()
        proc.wait(30)
    assert real_store.get_run(run.id).status == "failed"
    for text in ("beta_marker", "gamma", "trace*", "KeyError:"):
        q = parse_query(text)
        want = _grep(real_store, [run.id], q)
        assert want and _found(real_store, real_store.search_output(q).items, q) == want


def test_a_capped_log_is_indexed_as_the_log_holds_it(real_store):
    code = ("import sys\nsys.stdout.write('HEAD first\\n')\n"
            "for i in range(20000): sys.stdout.write(f'line {i:08d} word{i % 7}\\n')\n"
            "sys.stdout.write('TAIL last\\n')\n")
    make_job(real_store, "capped", "@yearly", kind="python", code=code, command=None,
             max_output="16k")
    run = real_store.request_run("capped")
    _supervise(real_store, run).wait(60)
    assert real_store.get_run(run.id).status == "succeeded"
    data = real_store.read_output(run.id)
    assert b"bytes cut here]" in data and b"line 00010000" not in data
    for text in ("head", "tail", "00019999", "00000005", "00010000", '"bytes cut"',
                 "word3", "line 0000001*"):
        q = parse_query(text)
        want = _grep(real_store, [run.id], q)
        assert _found(real_store, real_store.search_output(q).items, q) == want, text
    assert _hits(real_store, "00010000") == []  # cut from the log: not found
    assert _hits(real_store, "tail") == [run.id]
