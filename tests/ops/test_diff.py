"""ops/diff.py: two runs side by side — fields, metrics, output, notebook cells (nbdime)."""

from __future__ import annotations

import base64
import struct
import zlib

import nbformat
import pytest
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook, new_output

from hermes_cron_ext.ops.diff import ERROR, MAX_LINES, STDERR, STDOUT, diff_runs, output_diff


def _run(run_id: str, **fields) -> dict:
    """A run as ``Run.to_json`` gives it (the fields the diff reads)."""
    base = {"id": run_id, "job_id": "j1", "job_name": "nightly", "status": "succeeded",
            "trigger": "schedule", "scheduled_for": "2026-12-07T01:00:00.000+00:00",
            "started_at": "2026-12-07T01:00:00.100+00:00",
            "finished_at": "2026-12-07T01:00:05.100+00:00", "duration": 5.0,
            "exit_code": 0, "reason": None, "parameters": {"n": 1}, "job_version": 3,
            "file_sha256": "ab" * 32}
    return {**base, **fields}


def _png(rgb: tuple[int, int, int]) -> str:
    """A real 1x1 PNG of one colour, base64 as a notebook keeps it."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return (struct.pack(">I", len(data)) + kind + data
                + struct.pack(">I", zlib.crc32(kind + data)))
    raw = b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", 1, 1, 8, 2, 0, 0, 0))
    raw += chunk(b"IDAT", zlib.compress(b"\x00" + bytes(rgb))) + chunk(b"IEND", b"")
    return base64.b64encode(raw).decode() + "\n"


def _executed(answer: str, first_count: int, colour: tuple[int, int, int] = (0, 0, 0),
              fail: bool = False) -> bytes:
    """An executed notebook: the same five cells each time; what changes between two
    executions besides *answer* / *colour* is what every execution changes (execution
    counts, cell ids, cell and notebook metadata)."""
    n = first_count
    traceback = ["\x1b[0;31mKeyError\x1b[0m: 'x'"] if fail else []
    cells = [
        new_markdown_cell("# Nightly"),
        new_code_cell("import sys\nprint('start')", execution_count=n,
                      outputs=[new_output("stream", name="stdout", text="start\n")]),
        new_code_cell("compute()", execution_count=n + 1, outputs=[new_output(
            "execute_result", data={"text/plain": answer, "text/html": f"<b>{answer}</b>"},
            execution_count=n + 1, metadata={"run": str(n)})]),
        new_code_cell("plot()", execution_count=n + 2, outputs=[new_output(
            "display_data", data={"image/png": _png(colour), "text/plain": "<Figure>"})]),
        new_code_cell("check()", execution_count=n + 3, outputs=[
            new_output("error", ename="KeyError", evalue="'x'", traceback=traceback)]
            if fail else []),
    ]
    for cell in cells:
        cell.metadata["tags"] = [f"run-{n}"]
    nb = new_notebook(cells=cells, metadata={"papermill": {"duration": n * 1.5}})
    return nbformat.writes(nb).encode()


def test_one_changed_output_is_the_only_cell_shown():
    nb_a, nb_b = _executed("41", 1), _executed("42", 7)
    diff = diff_runs(_run("r1"), _run("r2"), b"", b"", nb_a, nb_b, {}, {})
    notebook = diff["notebook"]
    assert notebook["same"] is False
    assert [c["index"] for c in notebook["cells"]] == [2]
    cell = notebook["cells"][0]
    assert cell["change"] == "modified" and cell["cell_type"] == "code"
    assert cell["index_a"] == 2 and cell["source"] == ""  # the code did not change
    assert cell["outputs"] == [
        {"change": "modified", "mime": "text/html", "a": "<b>41</b>", "b": "<b>42</b>"},
        {"change": "modified", "mime": "text/plain", "a": "41", "b": "42"},
    ]


def test_same_notebook_executed_again_is_the_same():
    diff = diff_runs(_run("r1"), _run("r2"), b"", b"", _executed("42", 1),
                     _executed("42", 30), {}, {})
    assert diff["notebook"] == {"same": True, "cells": []}


def test_an_image_that_differs_is_given_as_base64_both_sides():
    red, blue = _png((255, 0, 0)), _png((0, 0, 255))
    diff = diff_runs(_run("r1"), _run("r2"), b"", b"", _executed("42", 1, (255, 0, 0)),
                     _executed("42", 2, (0, 0, 255)), {}, {})
    [cell] = diff["notebook"]["cells"]
    assert cell["index"] == 3
    assert cell["outputs"] == [{"change": "modified", "mime": "image/png", "a": red,
                                "b": blue}]
    assert base64.b64decode(cell["outputs"][0]["b"]).startswith(b"\x89PNG")


def test_an_error_that_appears_shows_its_traceback_without_colours():
    diff = diff_runs(_run("r1"), _run("r2", status="failed", exit_code=1), b"", b"",
                     _executed("42", 1), _executed("42", 2, fail=True), {}, {})
    [cell] = diff["notebook"]["cells"]
    assert cell["index"] == 4
    assert cell["outputs"] == [{"change": "added", "mime": ERROR, "a": None,
                                "b": "KeyError: 'x'"}]


def test_added_and_removed_cells_and_an_edited_source():
    nb_a = new_notebook(cells=[new_code_cell("a = 1"), new_code_cell("print('gone')"),
                               new_code_cell("total = a + 1\nprint(total)")])
    nb_b = new_notebook(cells=[
        new_code_cell("a = 1"), new_code_cell("total = a + 2\nprint(total)"),
        new_code_cell("import warnings", outputs=[
            new_output("stream", name="stderr", text="careful\n")])])
    diff = diff_runs(_run("r1"), _run("r2"), b"", b"", nbformat.writes(nb_a).encode(),
                     nbformat.writes(nb_b).encode(), {}, {})
    cells = diff["notebook"]["cells"]
    assert [(c["change"], c["index"], c["index_a"]) for c in cells] == [
        ("removed", 1, 1), ("modified", 1, 2), ("added", 2, None)]
    assert "-print('gone')" in cells[0]["source"]
    assert "-total = a + 1\n+total = a + 2" in cells[1]["source"]
    assert cells[2]["outputs"] == [{"change": "added", "mime": STDERR, "a": None,
                                    "b": "careful\n"}]


def test_a_notebook_only_one_run_has_and_none():
    nb = _executed("42", 1)
    only_b = diff_runs(_run("r1"), _run("r2"), b"", b"", None, nb, {}, {})["notebook"]
    assert [c["change"] for c in only_b["cells"]] == ["added"] * 5
    assert only_b["cells"][1]["outputs"] == [{"change": "added", "mime": STDOUT,
                                              "a": None, "b": "start\n"}]
    assert diff_runs(_run("r1"), _run("r2"), b"", b"", None, None, {}, {})["notebook"] is None
    # a notebook cut short (still being written) reads as none
    cut = diff_runs(_run("r1"), _run("r2"), b"", b"", nb[:100], nb[:100], {}, {})
    assert cut["notebook"] is None


def test_fields_that_differ_and_only_those():
    a = _run("r1")
    b = _run("r2", status="failed", exit_code=2, parameters={"n": 2},
             reason="exit status 2")
    diff = diff_runs(a, b, b"", b"", None, None, {}, {})
    assert diff["fields"] == [
        {"field": "status", "a": "succeeded", "b": "failed"},
        {"field": "exit_code", "a": 0, "b": 2},
        {"field": "parameters", "a": {"n": 1}, "b": {"n": 2}},
        {"field": "reason", "a": None, "b": "exit status 2"},
    ]
    assert diff["a"]["id"] == "r1" and diff["b"]["status"] == "failed"
    same = diff_runs(a, _run("r3"), b"x\n", b"x\n", None, None, {}, {})
    assert same["fields"] == [] and same["output"]["same"] is True


def test_a_run_still_running():
    running = _run("r2", status="running", finished_at=None, exit_code=None,
                   duration=1.25, file_sha256="cd" * 32, job_version=4)
    diff = diff_runs(_run("r1"), running, b"step 1\nstep 2\ndone\n", b"step 1\n",
                     None, None, {}, {})
    assert {f["field"]: f["b"] for f in diff["fields"]} == {
        "status": "running", "exit_code": None, "duration_s": 1.25,
        "job_version": 4, "file_sha256": "cd" * 32}
    assert diff["b"]["finished_at"] is None
    assert diff["output"]["removed"] == 2 and diff["output"]["added"] == 0


def test_metrics_that_differ():
    a = {"rows": {"unit": "", "value": 10.0}, "duration": {"unit": "s", "value": 5.0},
         "peak_memory": {"unit": "B", "value": 1000.0}, "loss": {"unit": "", "value": 0.5}}
    b = {"rows": {"unit": "", "value": 12.0}, "duration": {"unit": "s", "value": 6.0},
         "peak_memory": {"unit": "B", "value": 1000.0}, "auc": {"unit": "", "value": 0.9}}
    diff = diff_runs(_run("r1"), _run("r2"), b"", b"", None, None, a, b)
    assert diff["metrics"] == [
        {"name": "auc", "unit": "", "a": None, "b": 0.9},
        {"name": "loss", "unit": "", "a": 0.5, "b": None},
        {"name": "rows", "unit": "", "a": 10.0, "b": 12.0},
    ]


def test_output_diff_of_two_command_outputs():
    log_a = b"loading\n\rprogress 10%\rprogress 100%\nrows: 10\nok\n"
    log_b = b"loading\n\rprogress 50%\rprogress 100%\nrows: 12\nok\n\xff\n"
    out = diff_runs(_run("r1"), _run("r2"), log_a, log_b, None, None, {}, {})["output"]
    assert out["same"] is False and out["truncated"] is False
    # progress bars are compared as a terminal shows them: their last state
    assert out["unified"].splitlines() == [
        "--- run r1", "+++ run r2", "@@ -1,4 +1,5 @@", " loading", " progress 100%",
        "-rows: 10", "+rows: 12", " ok", "+\ufffd"]
    assert (out["added"], out["removed"]) == (2, 1)


def test_output_diff_is_cut_at_max_lines():
    a = b"".join(b"line %d\n" % i for i in range(3000))
    b = b"".join(b"LINE %d\n" % i for i in range(3000))
    out = output_diff(a, b)
    assert out["truncated"] is True
    assert len(out["unified"].splitlines()) == MAX_LINES
    assert (out["added"], out["removed"]) == (3000, 3000)


@pytest.mark.timeout(60)
def test_two_real_executions_differ_in_one_cell():
    """nbclient runs one notebook twice in a real kernel (ids and timing metadata
    differ as they do between runs); only the cell that printed differently and the one
    whose code changed are shown."""
    from jupyter_client.manager import KernelManager
    from nbclient import NotebookClient

    source = new_notebook(cells=[
        new_code_cell("import os"), new_code_cell("print(os.environ['WHO'])"),
        new_code_cell("1 + 1")])
    executed = []
    km = KernelManager(kernel_name="python3")
    km.start_kernel()  # one kernel for both: a second one would double the test's time
    try:
        for who in ("alice", "bob"):
            nb = nbformat.reads(nbformat.writes(source), as_version=4)
            for cell in nb.cells:
                cell.id = nbformat.corpus.words.generate_corpus_id()
            nb.cells[0].source = f"import os\nos.environ['WHO'] = {who!r}"
            NotebookClient(nb, km=km, timeout=30, record_timing=True).execute()
            executed.append(nbformat.writes(nb).encode())
    finally:
        km.shutdown_kernel(now=True)
    diff = diff_runs(_run("r1"), _run("r2"), b"", b"", executed[0], executed[1], {}, {})
    # what every execution changes differs: the cells' timing metadata and ids
    runs = [nbformat.reads(nb.decode(), 4) for nb in executed]
    assert runs[0].cells[2].metadata != runs[1].cells[2].metadata
    assert runs[0].cells[2].id != runs[1].cells[2].id
    cells = diff["notebook"]["cells"]
    assert [c["index"] for c in cells] == [0, 1]  # the code that set it, and the print
    assert cells[1]["source"] == ""
    assert cells[1]["outputs"] == [{"change": "modified", "mime": STDOUT,
                                    "a": "alice\n", "b": "bob\n"}]
