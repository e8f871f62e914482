"""Two runs side by side (``diff``): what changed between them, computed from what the
store already keeps — the runs' records, their logs, their notebooks and their metrics.

Pure: the caller (``ops/across.py``) reads the runs, checks the caller may read both, and
hands everything over; nothing here touches the store. A run still running diffs what it
has so far (its log and notebook as they stand, no ``finished_at``).
"""

from __future__ import annotations

import difflib
import json
from functools import lru_cache
from typing import Any

from hermes_cron_ext.domain.text import _ESCAPE, render_text

#: the fields of a run compared, in this order (``duration_s`` is ``duration`` in a run's
#: JSON; a running run's is its time so far)
FIELDS = ("status", "exit_code", "duration_s", "trigger", "parameters", "job_version",
          "file_sha256", "reason")
#: metrics left out of ``metrics``: they are fields already
_FIELD_METRICS = frozenset({"duration", "exit_code"})
#: the longest unified diff of the output returned, in lines (a log can be huge)
MAX_LINES = 2000
#: the mime types given to outputs that have none: JupyterLab's names for them
STDOUT, STDERR = "application/vnd.jupyter.stdout", "application/vnd.jupyter.stderr"
ERROR = "application/vnd.jupyter.error"
#: what a run without a notebook is diffed as
EMPTY = b'{"cells": [], "metadata": {}, "nbformat": 4, "nbformat_minor": 5}'


def diff_runs(a: dict[str, Any], b: dict[str, Any], log_a: bytes, log_b: bytes,
              nb_a: bytes | None, nb_b: bytes | None, metrics_a: dict[str, Any],
              metrics_b: dict[str, Any]) -> dict[str, Any]:
    """What differs between run *a* and run *b*.

    *a*, *b*: the runs as ``Run.to_json`` gives them. *log_a*, *log_b*: their whole
    output logs. *nb_a*, *nb_b*: their executed notebooks (``.ipynb`` bytes), None when a
    run has none. *metrics_a*, *metrics_b*: each run's metrics as
    ``{name: {"unit": str, "value": float}}`` (built-ins included; ``duration`` and
    ``exit_code`` are skipped: they are fields).

    Returns ``{"a", "b", "fields", "metrics", "output", "notebook"}`` (the contract of
    ``CronClient.diff``): only what differs is listed."""
    fields = [{"field": name, "a": _field(a, name), "b": _field(b, name)}
              for name in FIELDS if _field(a, name) != _field(b, name)]
    return {"a": _summary(a), "b": _summary(b), "fields": fields,
            "metrics": metric_changes(metrics_a, metrics_b),
            "output": output_diff(log_a, log_b, a.get("id"), b.get("id")),
            "notebook": notebook_diff(nb_a, nb_b)}


def _field(run: dict[str, Any], name: str) -> Any:
    if name == "duration_s":
        duration = run.get("duration")
        return None if duration is None else round(float(duration), 3)
    return run.get(name)


def _summary(run: dict[str, Any]) -> dict[str, Any]:
    """What names a run in the diff's header."""
    keys = ("id", "job_id", "job_name", "status", "trigger", "scheduled_for",
            "started_at", "finished_at", "exit_code")
    return {**{k: run.get(k) for k in keys}, "duration_s": _field(run, "duration_s")}


def metric_changes(metrics_a: dict[str, Any], metrics_b: dict[str, Any]
                   ) -> list[dict[str, Any]]:
    """The metrics whose value (or unit) differs, or that one run has and the other has
    not, by name: ``[{"name", "unit", "a", "b"}]`` (None for a value a run lacks)."""
    out = []
    for name in sorted((metrics_a.keys() | metrics_b.keys()) - _FIELD_METRICS):
        ma, mb = metrics_a.get(name), metrics_b.get(name)
        va = None if ma is None else ma.get("value")
        vb = None if mb is None else mb.get("value")
        unit_a = "" if ma is None else ma.get("unit") or ""
        unit_b = "" if mb is None else mb.get("unit") or ""
        if va != vb or (ma is not None and mb is not None and unit_a != unit_b):
            out.append({"name": name, "unit": unit_b if mb is not None else unit_a,
                        "a": va, "b": vb})
    return out


def _unified(a: str, b: str, name_a: str, name_b: str) -> list[str]:
    return list(difflib.unified_diff(a.splitlines(), b.splitlines(), name_a, name_b,
                                     n=3, lineterm=""))


def output_diff(log_a: bytes, log_b: bytes, id_a: str | None = None,
                id_b: str | None = None) -> dict[str, Any]:
    """The unified diff of two logs as a terminal shows them (``render_text``: a
    progress bar redrawn a thousand times is its last state, not a thousand lines), at
    most :data:`MAX_LINES` lines; ``added``/``removed`` count the whole diff."""
    text_a = render_text(log_a.decode("utf-8", "replace"))
    text_b = render_text(log_b.decode("utf-8", "replace"))
    if text_a == text_b:
        return {"same": True, "unified": "", "added": 0, "removed": 0, "truncated": False}
    lines = _unified(text_a, text_b, f"run {id_a or 'a'}", f"run {id_b or 'b'}")
    added = sum(1 for line in lines[2:] if line.startswith("+"))
    removed = sum(1 for line in lines[2:] if line.startswith("-"))
    return {"same": False, "unified": "\n".join(lines[:MAX_LINES]), "added": added,
            "removed": removed, "truncated": len(lines) > MAX_LINES}


@lru_cache(maxsize=1)
def _nbdime_config() -> Any:
    """nbdime's notebook diff configuration, ignoring what every execution changes:
    execution counts, cell ids and metadata (of the notebook, cells and outputs).

    A copy of nbdime's own, built once: ``set_notebook_diff_targets`` would change
    nbdime's module-wide differs for every other user in the process. Imported on first
    use: nbformat's import takes a second here, which a server that never diffs a
    notebook should not pay."""
    import copy

    from nbdime.diffing.notebooks import diff_ignore, diff_ignore_keys, notebook_config

    config = copy.copy(notebook_config)
    # a cell's id is atomic to nbdime (replaced, never diffed), so it goes with the
    # cell's other keys; outputs' execution_count and metadata come back as direct keys
    config.differs["/cells/*"] = diff_ignore_keys(
        config.differs["/cells/*"], ("execution_count", "id", "metadata"))
    config.differs["/cells/*/outputs/*"] = diff_ignore_keys(
        config.differs["/cells/*/outputs/*"], ("execution_count", "metadata"))
    config.differs["/cells/*/metadata"] = diff_ignore
    config.differs["/cells/*/outputs/*/metadata"] = diff_ignore
    return config


def _read_notebook(data: bytes | None) -> Any:
    """The notebook (nbformat 4), or None: none, or not a notebook (a run's notebook
    is written as it runs; one cut short reads as none rather than failing the diff)."""
    if data is None:
        return None
    import nbformat

    try:
        return nbformat.reads(  # type: ignore[no-untyped-call]
            data.decode("utf-8", "replace"), as_version=4)
    except (ValueError, KeyError, TypeError, AttributeError):
        return None


def notebook_diff(nb_a: bytes | None, nb_b: bytes | None) -> dict[str, Any] | None:
    """The cells that changed between two executed notebooks, as nbdime matches them;
    None when neither run has a notebook (one that only one run has: every cell added
    or removed)."""
    a, b = _read_notebook(nb_a), _read_notebook(nb_b)
    if a is None and b is None:
        return None
    from nbdime.diffing.generic import diff

    a = a if a is not None else _read_notebook(EMPTY)
    b = b if b is not None else _read_notebook(EMPTY)
    ops = [op for op in diff(a, b, path="", config=_nbdime_config())
           if op["key"] == "cells" and op["op"] == "patch"]
    cells: list[dict[str, Any]] = []
    i_a = i_b = 0
    for op in _ordered(ops[0]["diff"] if ops else []):
        i_b += op["key"] - i_a
        i_a = op["key"]
        if op["op"] == "addrange":
            for cell in op["valuelist"]:
                cells.append(_whole_cell(cell, "added", i_b, None))
                i_b += 1
        elif op["op"] == "removerange":
            for cell in a.cells[i_a:i_a + op["length"]]:
                cells.append(_whole_cell(cell, "removed", i_b, i_a))
                i_a += 1
        elif op["op"] == "patch":
            changed = _changed_cell(a.cells[i_a], b.cells[i_b], op["diff"], i_b, i_a)
            if changed is not None:
                cells.append(changed)
            i_a += 1
            i_b += 1
    return {"same": not cells, "cells": cells}


def _ordered(ops: list[Any]) -> list[Any]:
    """A sequence diff's operations as they apply: by position in *a*, at one position
    what is inserted before it first."""
    rank = {"addrange": 0, "removerange": 1, "patch": 2}
    return sorted(ops, key=lambda op: (op["key"], rank.get(op["op"], 3)))


def _source(cell: Any) -> str:
    source = cell.get("source", "")
    return "".join(source) if isinstance(source, list) else str(source)


def _whole_cell(cell: Any, change: str, index: int, index_a: int | None
                ) -> dict[str, Any]:
    """A cell only one notebook has. A removed cell's ``index`` is where it would be in
    *b* (the cell that follows it there)."""
    added = change == "added"
    source = _source(cell)
    outputs = [{"change": change, "mime": mime, "a": None if added else text,
                "b": text if added else None}
               for output in cell.get("outputs", []) for mime, text in _bundle(output)]
    return {"index": index, "index_a": index_a, "cell_type": cell.get("cell_type"),
            "change": change,
            "source": "\n".join(_unified("" if added else source, source if added else "",
                                         "a", "b")),
            "outputs": outputs}


def _changed_cell(ca: Any, cb: Any, cell_diff: list[Any], index: int, index_a: int
                  ) -> dict[str, Any] | None:
    """A cell both have: its source diff and the outputs nbdime found changed, each
    mime of them that differs."""
    outputs: list[dict[str, Any]] = []
    out_ops = _ordered(next((op["diff"] for op in cell_diff
                             if op["key"] == "outputs" and op["op"] == "patch"), []))
    oa, ob = ca.get("outputs", []), cb.get("outputs", [])
    j_a = j_b = 0
    for op in out_ops:
        j_b += op["key"] - j_a
        j_a = op["key"]
        if op["op"] == "addrange":
            # nbdime pairs only outputs that look alike ("41" and "42" do not): an output
            # it replaces by one of the same kind at the same place is that output changed
            span = len(op["valuelist"])
            removed = next((o["length"] for o in out_ops
                            if o["op"] == "removerange" and o["key"] == op["key"]), 0)
            for k in range(span):
                if k < removed and _kind(oa[j_a + k]) == _kind(ob[j_b + k]):
                    outputs += _output_changes(oa[j_a + k], ob[j_b + k])
                else:
                    outputs += [{"change": "added", "mime": m, "a": None, "b": t}
                                for m, t in _bundle(ob[j_b + k])]
            j_b += span
        elif op["op"] == "removerange":
            paired = next((len(o["valuelist"]) for o in out_ops
                           if o["op"] == "addrange" and o["key"] == op["key"]), 0)
            for k, output in enumerate(oa[j_a:j_a + op["length"]]):
                if k >= paired or _kind(output) != _kind(ob[j_b - paired + k]):
                    outputs += [{"change": "removed", "mime": m, "a": t, "b": None}
                                for m, t in _bundle(output)]
            j_a += op["length"]
        elif op["op"] == "patch":
            outputs += _output_changes(oa[j_a], ob[j_b])
            j_a += 1
            j_b += 1
    source_a, source_b = _source(ca), _source(cb)
    if source_a == source_b and not outputs:
        return None  # nothing shown changed (what nbdime saw is ignored here too)
    return {"index": index, "index_a": index_a, "cell_type": cb.get("cell_type"),
            "change": "modified",
            "source": "\n".join(_unified(source_a, source_b, "a", "b")),
            "outputs": outputs}


def _kind(output: Any) -> tuple[str, str]:
    return output.get("output_type", ""), output.get("name", "")


def _output_changes(oa: Any, ob: Any) -> list[dict[str, Any]]:
    """One output in both runs: each of its mimes that differs."""
    before, after = dict(_bundle(oa)), dict(_bundle(ob))
    out = []
    for mime in [*before, *(m for m in after if m not in before)]:
        ta, tb = before.get(mime), after.get(mime)
        if ta != tb:
            change = "added" if ta is None else "removed" if tb is None else "modified"
            out.append({"change": change, "mime": mime, "a": ta, "b": tb})
    return out


def _bundle(output: Any) -> list[tuple[str, str]]:
    """An output as ``(mime, text)`` pairs: a stream's text, an error's traceback
    (colours stripped), each representation of a result or display (images stay
    base64, structured data is JSON)."""
    kind = output.get("output_type")
    if kind == "stream":
        return [(STDERR if output.get("name") == "stderr" else STDOUT,
                 _text(output.get("text", "")))]
    if kind == "error":
        traceback = output.get("traceback") or [
            f"{output.get('ename', '')}: {output.get('evalue', '')}"]
        return [(ERROR, _ESCAPE.sub("", "\n".join(traceback)))]
    data = output.get("data") or {}
    return [(mime, _text(value) if isinstance(value, (str, list))
             else json.dumps(value, sort_keys=True))
            for mime, value in sorted(data.items())]


def _text(value: Any) -> str:
    return "".join(value) if isinstance(value, list) else str(value)
