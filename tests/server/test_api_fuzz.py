"""Schemathesis against a live server: generated requests from our OpenAPI document,
every third with a hostile value (``fuzz_hooks.py``: deep, overflowing, NUL).

Run with the in-server ticker off and "run now" excluded, so generated jobs are
stored but never executed.
"""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from tests.conftest import wait_for
from tests.server.test_app import _free_port

schemathesis = pytest.importorskip("schemathesis")
ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def test_generated_requests_never_get_a_server_error(tmp_path):
    import urllib.request

    port = _free_port()
    env = {**os.environ, "HERMES_CRON_DB": str(tmp_path / "fuzz.db"),
           "JUPYTER_RUNTIME_DIR": str(tmp_path / "runtime")}
    server = subprocess.Popen(
        [sys.executable, "-m", "jupyter_server", "--no-browser", "--ip=127.0.0.1",
         f"--port={port}", "--IdentityProvider.token=tok", "--allow-root",
         "--HermesCron.ticker=False", f"--ServerApp.root_dir={tmp_path}"],
        env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    base = f"http://127.0.0.1:{port}/api/cron"

    def up():
        try:
            req = urllib.request.Request(f"{base}/status",
                                         headers={"Authorization": "token tok"})
            return urllib.request.urlopen(req, timeout=5).status == 200
        except OSError:
            return False
    try:
        wait_for(up, 60, 0.2, "the server")
        # the document as served: its job bodies are generated from the options schema
        spec = tmp_path / "openapi.json"
        req = urllib.request.Request(f"{base}/openapi.json",
                                     headers={"Authorization": "token tok"})
        spec.write_bytes(urllib.request.urlopen(req, timeout=10).read())
        proc = subprocess.run(
            [sys.executable, "-c", "import sys; from schemathesis.cli import schemathesis; "
             "sys.exit(schemathesis())", "run", str(spec), "--url", base,
             "-H", "Authorization: token tok",
             "--checks", "not_a_server_error,status_code_conformance,"
             "content_type_conformance,response_schema_conformance",
             "--max-examples", "15", "--seed", "7", "-w", "1",
             "--exclude-path-regex", "(stream|events|/run$)"],
            capture_output=True, text=True, timeout=300, cwd=tmp_path,  # its cache goes there
            # hostile values (deep, overflowing, NUL) in every third generated request
            env={**os.environ, "SCHEMATHESIS_HOOKS": "tests.server.fuzz_hooks",
                 "PYTHONPATH": ROOT})
        summary = proc.stdout[-3000:] + proc.stderr[-3000:]
        assert proc.returncode == 0, summary
        assert "generated" in summary and " 0 " not in summary.split("generated")[0][-8:]
    finally:
        server.terminate()
        server.wait(10)
