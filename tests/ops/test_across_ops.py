"""Views across runs (issue 34) through each implementation: ``Operations`` on the store
and ``RestClient`` through a real Jupyter server whose ticker runs real jobs. Search
answers what ``grep`` with the search rule answers on the raw logs (the lines, their
byte offsets, their context across the index's chunk edges); the timeline, calendar and
diff say what happened; bad input is one ``InvalidInput`` naming its field. The
viewer rules (a hub store: each user sees only the runs of jobs they may read) are
checked on the store, as for notifications."""

from __future__ import annotations

import time
import uuid
from datetime import UTC, datetime, timedelta

import pytest

from hermes_cron_ext.domain.access import Viewer
from hermes_cron_ext.domain.models import iso, parse_iso
from hermes_cron_ext.domain.search import parse_query
from hermes_cron_ext.domain.text import render_text
from hermes_cron_ext.errors import InvalidInput, NotFound
from hermes_cron_ext.ops import Operations
from tests.ops.test_operations import ops as ops  # noqa: F401 - the fixture, both backends

pytest_plugins = ("tests.notebook_fixtures",)


@pytest.fixture
def names(ops):  # noqa: F811
    made: list[str] = []

    def make() -> str:
        made.append(f"across-{uuid.uuid4().hex[:8]}")
        return made[-1]
    yield make
    for name in made:
        try:
            ops.remove(name)
        except NotFound:
            pass


def _run(ops, name: str, code: str, schedule: str = "@yearly") -> dict:  # noqa: F811
    ops.add({"name": name, "schedule": schedule, "timezone": "UTC", "kind": "python",
             "code": code})
    run = ops.run_now(name)
    done = ops.wait(run["id"], timeout=60)
    assert done["status"] in ("succeeded", "failed"), done
    return done


def grep(log: bytes, q: str, context: int = 2) -> list[dict]:
    """The search rule applied to a raw log, line by line: what search must answer."""
    query = parse_query(q)
    lines = log.split(b"\n")
    if lines and lines[-1] == b"":
        lines.pop()
    shown = [render_text(b.decode("utf-8", "replace"))[:500] for b in lines]
    out, pos = [], 0
    for i, raw in enumerate(lines):
        if query.matches(raw.decode("utf-8", "replace")):
            out.append({"offset": pos, "line": shown[i],
                        "before": shown[max(0, i - context):i],
                        "after": shown[i + 1:i + 1 + context]})
        pos += len(raw) + 1
    return out


#: a log of ~60 KiB: many index chunks; "needle" lines on both sides of each 8 KiB edge,
#: a tqdm-like bar redrawn with carriage returns, and punctuation around the words
NEEDLES = """
import sys
pos = 0
for i in range(1500):
    line = f"row {i:05d} filler text to make the line longer ........"
    if pos // 8192 != (pos + len(line) + 1) // 8192 or i in (3, 4):
        line += " KeyError: 'needle' in etl.py"
    if i == 7:
        line = "progress 10%\\rprogress 100% KeyError: needle done"
    sys.stdout.write(line + "\\n")
    pos += len(line.encode()) + 1
"""


def test_search_answers_what_grep_answers_on_the_raw_log(ops, names):  # noqa: F811
    name = names()
    run = _run(ops, name, NEEDLES)
    log, _, _ = ops.log(run["id"])
    assert len(log) > 50_000
    for q in ("KeyError:", "needle", '"etl py"', "neEd*", "keyerror NEEDLE etl.py"):
        want = grep(log, q)
        assert len(want) > 5, q
        got = ops.search(q, job=name)
        assert got["query"] == q
        (hit,) = got["hits"]
        assert hit["run_id"] == run["id"] and hit["job_name"] == name
        assert hit["status"] == "succeeded" and hit["trigger"] == "manual"
        assert hit["fire_at"].endswith("Z") and hit["finished_at"].endswith("Z")
        assert hit["matches"] == want[:5], q  # offsets, lines and context alike
        assert hit["more"] is True
    # the redrawn bar is shown as a terminal shows it; its offset is the line's
    bar = next(m for m in ops.search("progress done", job=name)["hits"][0]["matches"])
    assert bar["line"] == "progress 100% KeyError: needle done"
    assert log[bar["offset"]:].startswith(b"progress 10%\r")
    # whole words: no line has the token "need" or "keyerr"
    assert ops.search("need", job=name)["hits"] == []
    assert ops.search("keyerr", job=name)["hits"] == []


def test_search_context_crosses_the_index_chunks_edges(ops, names):  # noqa: F811
    """Every needle line sits at an 8 KiB edge: its context lines are in other chunks."""
    name = names()
    run = _run(ops, name, NEEDLES)
    log, _, _ = ops.log(run["id"])
    want = grep(log, "needle", context=3)
    got = ops.search("needle", job=name, context=3)["hits"][0]["matches"]
    assert got == want[:5]
    assert all(len(m["before"]) == 3 and len(m["after"]) == 3 for m in got)


def test_search_pages_newest_first_and_filters(ops, names):  # noqa: F811
    a, b = names(), names()
    first = _run(ops, a, "print('alpha beta gamma')")
    second = _run(ops, b, "print('beta gamma')\nraise SystemExit(3)")
    third = ops.wait(ops.run_now(a)["id"], timeout=60)
    seen = []
    cursor = None
    while True:
        page = ops.search("beta gamma", limit=1, cursor=cursor, since="1h")
        seen += [h["run_id"] for h in page["hits"]]
        cursor = page["cursor"]
        if cursor is None:
            break
    mine = [r for r in seen if r in (first["id"], second["id"], third["id"])]
    assert mine == [third["id"], second["id"], first["id"]]
    failed = ops.search("beta", status="failed", job=b)["hits"]
    assert [h["run_id"] for h in failed] == [second["id"]]
    assert failed[0]["matches"] == [{"offset": 0, "line": "beta gamma", "before": [],
                                     "after": []}] and failed[0]["more"] is False
    assert ops.search("alpha", job=b)["hits"] == []
    future = (datetime.now(UTC) + timedelta(hours=1)).isoformat()
    assert ops.search("alpha", job=a, since=future)["hits"] == []


def test_search_bad_input_names_the_field(ops):  # noqa: F811
    for kwargs, field in (({"q": ""}, "q"), ({"q": "   "}, "q"), ({"q": "x" * 201}, "q"),
                          ({"q": "a", "since": "yesterday"}, "since"),
                          ({"q": "a", "status": "bogus"}, "status"),
                          ({"q": "a", "limit": 0}, "limit"),
                          ({"q": "a", "limit": 101}, "limit")):
        q = kwargs.pop("q")
        with pytest.raises(InvalidInput) as err:
            ops.search(q, **kwargs)
        assert err.value.field == field, (q, kwargs)
        assert "\n" not in err.value.message
    with pytest.raises(NotFound):
        ops.search("a", job="no-such-job-here")


def test_timeline_has_the_runs_and_the_coming_slots(ops, names):  # noqa: F811
    name = names()
    run = _run(ops, name, "print('x')", schedule="*/30 * * * *")
    got = ops.timeline("1h", "2h", job=name)
    now = parse_iso(got["now"])
    assert abs(now - time.time()) < 30
    assert parse_iso(got["from"]) == pytest.approx(now - 3600, abs=1)
    assert parse_iso(got["to"]) == pytest.approx(now + 7200, abs=1)
    (shown,) = got["runs"]
    assert shown["id"] == run["id"] and shown["status"] == "succeeded"
    assert shown["missed"] is False and shown["job_name"] == name
    assert set(shown) == {"id", "job_id", "job_name", "status", "trigger", "fire_at",
                          "scheduled_for", "started_at", "finished_at", "reason", "missed"}
    slots = [parse_iso(s["at"]) for s in got["slots"]]
    assert len(slots) == 4 and all(s["job_name"] == name for s in got["slots"])
    assert slots == sorted(slots) and all(now <= s < now + 7200 for s in slots)
    assert all(int(s) % 1800 == 0 for s in slots)
    # a paused job has no coming slots; its runs stay
    ops.pause(name)
    paused = ops.timeline(job=name)
    assert paused["slots"] == [] and [r["id"] for r in paused["runs"]] == [run["id"]]
    # ISO bounds; a range before the run has none of it
    before = datetime.fromtimestamp(now - 7200, UTC).isoformat()
    earlier = ops.timeline(before, datetime.fromtimestamp(now - 3600, UTC).isoformat(),
                           job=name)
    assert earlier["runs"] == [] and earlier["slots"] == []


def test_timeline_bad_input_names_the_field(ops):  # noqa: F811
    for args, kwargs, field in ((("soon",), {}, "from"), ((None, "later"), {}, "to"),
                                (("1h", "-2h"), {}, "to"),
                                (("100d",), {}, "from"),
                                ((), {"status": "bogus"}, "status"),
                                ((), {"limit": 0}, "limit")):
        with pytest.raises(InvalidInput) as err:
            ops.timeline(*args, **kwargs)
        assert err.value.field == field, (args, kwargs)


def test_calendar_counts_the_jobs_days_in_its_zone(ops, names):  # noqa: F811
    name = names()
    ok = _run(ops, name, "print('ok')")
    ops.edit(name, {"code": "raise SystemExit(1)"})
    bad = ops.wait(ops.run_now(name)["id"], timeout=60)
    assert (ok["status"], bad["status"]) == ("succeeded", "failed")
    got = ops.calendar(name, days=3)
    assert (got["job_name"], got["tz"]) == (name, "UTC")
    days = [d["day"] for d in got["days"]]
    today = datetime.now(UTC).date()
    assert days == [(today - timedelta(days=i)).isoformat() for i in (2, 1, 0)]
    assert got["days"][-1] == {"day": today.isoformat(), "total": 2, "succeeded": 1,
                               "failed": 1, "cancelled": 0, "skipped": 0, "running": 0}
    assert got["days"][0]["total"] == 0
    ops.edit(name, {"timezone": "Pacific/Kiritimati"})  # UTC+14: another calendar day
    there = ops.calendar(name, days=1)
    assert there["tz"] == "Pacific/Kiritimati"
    assert there["days"][0]["day"] == datetime.now(UTC).astimezone(
        __import__("zoneinfo").ZoneInfo("Pacific/Kiritimati")).date().isoformat()
    assert len(ops.calendar(name)["days"]) == 90
    for days_ in (0, 367):
        with pytest.raises(InvalidInput) as err:
            ops.calendar(name, days=days_)
        assert err.value.field == "days"
    with pytest.raises(NotFound):
        ops.calendar("no-such-job-here")


def test_diff_of_two_runs(ops, names):  # noqa: F811
    name = names()
    a = _run(ops, name, "print('same\\nonly in a\\nend')")
    ops.edit(name, {"code": "print('same\\nonly in b\\nend')\nraise SystemExit(2)"})
    b = ops.wait(ops.run_now(name)["id"], timeout=60)
    got = ops.diff(a["id"], b["id"])
    assert got["a"]["id"] == a["id"] and got["b"]["id"] == b["id"]
    fields = {f["field"]: (f["a"], f["b"]) for f in got["fields"]}
    assert fields["status"] == ("succeeded", "failed") and fields["exit_code"] == (0, 2)
    assert fields["job_version"][0] < fields["job_version"][1]
    out = got["output"]
    assert out["same"] is False and (out["added"], out["removed"]) == (1, 1)
    assert "-only in a" in out["unified"] and "+only in b" in out["unified"]
    assert got["notebook"] is None
    same = ops.diff(a["id"], a["id"])
    assert same["fields"] == [] and same["output"]["same"] is True
    with pytest.raises(NotFound):
        ops.diff(a["id"], "r_0000000000000000")
    with pytest.raises((InvalidInput, NotFound)):
        ops.diff("", a["id"])


# -- the viewer rules, on a hub store ---------------------------------------------------------

def _ended_run(store, job_id: str, text: str, status: str = "succeeded",
               reason: str | None = None) -> str:
    """A run of *job_id* that wrote *text* and ended, its output indexed as the
    supervisor indexes it."""
    run = store.request_run(job_id)
    if status == "skipped":
        store.finish_run(run.id, "skipped", None, reason)
        return run.id
    store.attach_run(run.id, 1, None, "h")
    store.mark_running(run.id, time.time(), 2)
    writer = store.output_writer(run.id)
    writer.write("stdout", text.encode())
    store.index_output(run.id, writer.index_pending(True))
    writer.close()
    store.finish_run(run.id, status, 0 if status == "succeeded" else 1, reason)
    return run.id


@pytest.mark.parametrize("store_backend", ["sqlite", pytest.param("postgres", marks=(
    pytest.mark.postgres,))], indirect=True)
def test_each_user_sees_only_the_runs_of_jobs_they_may_read(real_store):
    ops = Operations(real_store)
    alice, bob = Viewer("alice"), Viewer("bob")
    runs = {}
    for who in (alice, bob):
        job = ops.as_user(who).create({"name": "etl", "schedule": "@yearly",
                                       "command": "true", "timezone": "UTC"})[0]
        runs[who.name] = _ended_run(real_store, job["id"], f"secret of {who.name} KeyError\n")
    mine = ops.as_user(alice)
    assert [h["run_id"] for h in mine.search("KeyError")["hits"]] == [runs["alice"]]
    assert [r["id"] for r in mine.timeline()["runs"]] == [runs["alice"]]
    assert mine.calendar("etl", 1)["days"][0]["total"] == 1
    with pytest.raises(NotFound):
        mine.diff(runs["alice"], runs["bob"])
    with pytest.raises(NotFound):
        mine.search("KeyError", job=ops.as_user(bob).job("etl")["id"])
    admin = ops.as_user(Viewer("root", admin=True))
    assert {h["run_id"] for h in admin.search("KeyError")["hits"]} == set(runs.values())
    assert {r["id"] for r in ops.timeline()["runs"]} == set(runs.values())
    # a job shared with alice's group: she sees its runs too
    ops.as_user(bob).edit("etl", {"shares": {"team": "read"}})
    shared = ops.as_user(Viewer("alice", groups=frozenset({"team"})))
    assert {h["run_id"] for h in shared.search("KeyError")["hits"]} == set(runs.values())
    assert shared.diff(runs["alice"], runs["bob"])["output"]["same"] is False


@pytest.mark.parametrize("store_backend", ["sqlite", pytest.param("postgres", marks=(
    pytest.mark.postgres,))], indirect=True)
def test_a_missed_slot_is_marked_on_the_timeline(real_store):
    ops = Operations(real_store)
    job = ops.create({"name": "nightly", "schedule": "@yearly", "command": "true",
                      "timezone": "UTC"})[0]
    missed = _ended_run(real_store, job["id"], "", "skipped", "missed: no ticker was alive")
    other = _ended_run(real_store, job["id"], "", "skipped", "overlap: a run was active")
    got = {r["id"]: r["missed"] for r in ops.timeline()["runs"]}
    assert got == {missed: True, other: False}
    day = ops.calendar("nightly", 1)["days"][0]
    assert (day["total"], day["skipped"]) == (2, 2)


@pytest.mark.parametrize("store_backend", ["sqlite", pytest.param("postgres", marks=(
    pytest.mark.postgres,))], indirect=True)
def test_search_is_grep_on_either_backend(real_store):
    """A log written in small appends (index pieces end wherever the writes did), with
    invalid UTF-8 and a line over 8 KiB: the lines, offsets and context are grep's."""
    ops = Operations(real_store)
    job = ops.create({"name": "etl", "schedule": "@yearly", "command": "true",
                      "timezone": "UTC"})[0]
    lines = [f"row {i:04d} some filler words here".encode() for i in range(600)]
    for i in (0, 150, 151, 299, 300, 450):
        lines[i] += b" ERROR: disk \xff\xfe full"
    lines[200] = b"x" * 9000 + b" ERROR disk full at the end of a long line"
    log = b"\n".join(lines) + b"\n"
    run = real_store.request_run(job["id"])
    real_store.attach_run(run.id, 1, None, "h")
    real_store.mark_running(run.id, time.time(), 2)
    writer = real_store.output_writer(run.id)
    for k in range(0, len(log), 1000):  # appends that end mid-line
        writer.write("stdout", log[k:k + 1000])
        real_store.index_output(run.id, writer.index_pending(False))
    real_store.index_output(run.id, writer.index_pending(True))
    writer.close()
    real_store.finish_run(run.id, "succeeded", 0)
    assert real_store.read_output(run.id) == log
    for q in ("error disk full", '"disk full"', "ERR*", "full"):
        want = grep(log, q)
        (hit,) = ops.search(q)["hits"]
        assert hit["matches"] == want[:5], q
        assert hit["more"] is (len(want) > 5), q
    # a line of 30 KiB (indexed as four pieces): found by its end, at its own offset
    long = b"head\n" + b"y" * 30000 + b" lonely needle\ntail\n"
    run = real_store.request_run(job["id"])
    writer = real_store.output_writer(run.id)
    writer.write("stdout", long)
    real_store.index_output(run.id, writer.index_pending(True))
    writer.close()
    real_store.finish_run(run.id, "succeeded", 0)
    (hit,) = ops.search("lonely needle")["hits"]
    assert hit["matches"] == grep(long, "lonely needle") == [
        {"offset": 5, "line": "y" * 500, "before": ["head"], "after": ["tail"]}]


@pytest.mark.parametrize("store_backend", ["sqlite", pytest.param("postgres", marks=(
    pytest.mark.postgres,))], indirect=True)
def test_coming_slots_read_only_the_soonest_due_jobs(real_store, monkeypatch):
    """The slots come from the store's due index (the soonest-due jobs), yet are the ones
    every job's schedule gives: with the cap met (MAX_SLOTS made 2), for a range from
    now and for one that starts ahead (every job due before it), and for one job."""
    from hermes_cron_ext.domain import schedule as sched
    from hermes_cron_ext.ops import across

    def slots(jobs, begin: float, end: float) -> list[dict]:
        """Every firing job's schedule from *begin*, merged: what the slots must be."""
        out = []
        for job in jobs:
            if job.state != "scheduled" or not job.enabled:
                continue
            parsed, at = sched.parse(job.schedule, job.timezone), begin - 1e-6
            for _ in range(across.SLOTS_PER_JOB):
                moment = parsed.next_fire(datetime.fromtimestamp(at, UTC))
                if moment is None or moment.timestamp() >= end:
                    break
                at = moment.timestamp()
                out.append((at, job.id, job.name))
        return [{"job_id": i, "job_name": n, "at": iso(at)}
                for at, i, n in sorted(out)[:across.MAX_SLOTS]]

    ops = Operations(real_store)
    # hourly at 0, 10, ... 50: from half an hour ahead, their order is not their
    # next_run_at's (the store's), so a range ahead needs every job due before it
    for i, schedule in enumerate([f"{m} * * * *" for m in range(0, 60, 10)] + [
            "*/7 * * * *", "@yearly", "*/7 * * * *"]):  # two share theirs
        ops.create({"name": f"s{i}", "schedule": schedule, "command": "true",
                    "timezone": "UTC"})
    ops.create({"name": "held", "schedule": "* * * * *", "command": "true",
                "timezone": "UTC"})
    ops.pause("held")
    ops.create({"name": "off", "schedule": "* * * * *", "command": "true",
                "timezone": "UTC", "enabled": False})
    every = ops._all_jobs()
    now = time.time()
    ahead = datetime.fromtimestamp(now + 3.5 * 3600, UTC)
    for cap in (across.MAX_SLOTS, 2):
        capped = cap < across.MAX_SLOTS
        monkeypatch.setattr(across, "MAX_SLOTS", cap)
        for start, end in ((None, "3h"), (ahead.isoformat(),
                                          (ahead + timedelta(hours=5)).isoformat())):
            got = ops.timeline(start, end)
            begin = max(parse_iso(got["now"]), parse_iso(got["from"]))
            want = slots(every, begin, parse_iso(got["to"]))
            assert got["slots"] == want and want, (cap, start)
            assert len(want) == cap if capped else len(want) < cap
            assert not {s["job_name"] for s in want} & {"held", "off"}
        one = ops.timeline(None, "3h", job="s1")
        assert one["slots"] == slots(
            [ops._job("s1")], parse_iso(one["now"]), parse_iso(one["to"]))
