"""Live run output as SSE, read the way the run stream handler reads it: frames carry
the byte offset after them as their ``id``, so a viewer resuming at any offset gets
exactly the bytes after it, in their streams, once; a frame never ends inside a UTF-8
character while the run is active; a live viewer that falls more than ``LIVE_BEHIND``
behind skips ahead with a ``gap`` event (and a ``?lossless=1`` one does not); the
shared feed (:class:`Feeds`) reads a real run's log, written by a real
:class:`OutputWriter` on a real SQLite store."""

from __future__ import annotations

import asyncio
import json
from concurrent.futures import ThreadPoolExecutor

import pytest
from jupyter_server.auth.identity import IdentityProvider, User

from hermes_cron_ext.domain.access import Viewer
from hermes_cron_ext.ops import Operations
from hermes_cron_ext.server.streams import (
    BATCH,
    LIVE_BEHIND,
    LIVE_KEEP,
    RING_BYTES,
    Feeds,
    RunFeed,
    gap_frame,
    output_frames,
    sse_frame,
    utf8_boundary,
)
from hermes_cron_ext.store import output
from tests.conftest import make_job
from tests.server.test_handlers import SSE, cron, cron_db, sse_url  # noqa: F401 (fixtures)


def parse(data: bytes) -> list[dict]:
    """SSE frames as a browser's EventSource sees them."""
    events = []
    text = data.decode()
    assert text == "" or text.endswith("\n\n"), "a frame is cut short"
    for block in text.split("\n\n")[:-1]:
        event = {}
        for line in block.split("\n"):
            key, _, value = line.partition(": ")
            event[key] = json.loads(value) if key == "data" else value
        events.append(event)
    return events


def replay(events: list[dict], start: int) -> tuple[bytes, list[str], int]:
    """The bytes and per-byte streams *events* carry from *start*; each event must begin
    where the one before ended (its ``id``)."""
    data, stream_of, pos = b"", [], start
    for e in events:
        if e["event"] == "gap":
            assert e["data"]["from"] == pos
            pos = e["data"]["to"]
        else:
            assert e["data"]["offset"] == pos, "bytes lost or repeated"
            chunk = e["data"]["text"].encode()
            data += chunk
            stream_of += [e["data"]["stream"]] * len(chunk)
            pos += len(chunk)
        assert int(e["id"]) == pos
    return data, stream_of, pos


def streams_of(path: str, start: int) -> list[str]:
    return [s for _, s, d in output.segments(path, start) for _ in d]


# -- pure pieces ------------------------------------------------------------------------

@pytest.mark.parametrize(("data", "cut"), [
    (b"", 0),
    (b"plain", 5),
    (b"a\xc3", 1),  # half of "é"
    ("a\u00e9".encode(), 3),
    (b"x\xe2\x98", 1),  # two thirds of "☕"
    ("x\u2615".encode(), 4),
    (b"\xf0\x9f\x98", 0),  # three quarters of an emoji
    ("\U0001f600".encode(), 4),
])
def test_utf8_boundary(data, cut):
    assert utf8_boundary(data) == cut


def test_utf8_boundary_is_the_longest_prefix_that_decodes():
    data = "a\u00e9\u2615\U0001f600z".encode()
    for end in range(len(data) + 1):
        prefix = data[:end]
        cut = utf8_boundary(prefix)
        prefix[:cut].decode("utf-8")  # never ends inside a character
        for longer in range(cut + 1, end + 1):
            with pytest.raises(UnicodeDecodeError):
                prefix[:longer].decode("utf-8")


def test_sse_frame_is_one_event_with_its_id():
    assert sse_frame("output", {"text": "hi"}, 42) == (
        b'event: output\nid: 42\ndata: {"text": "hi"}\n\n')
    assert sse_frame("status", {"status": "running"}) == (
        b'event: status\ndata: {"status": "running"}\n\n')


def test_a_newline_in_the_output_cannot_break_the_framing():
    frame = sse_frame("output", {"text": "line one\n\ndata: forged\n"}, 7)
    assert parse(frame) == [{"event": "output", "id": "7",
                             "data": {"text": "line one\n\ndata: forged\n"}}]


def test_gap_frame_says_what_was_skipped_and_resumes_after_it():
    start, end, frame, is_gap = gap_frame(100, 4196)
    assert (start, end, is_gap) == (100, 4196, True)
    assert parse(frame) == [{"event": "gap", "id": "4196",
                             "data": {"from": 100, "to": 4196, "bytes": 4096}}]


def test_output_frames_carry_their_offsets_and_streams():
    segs = [(10, "stdout", b"out\n"), (14, "stderr", b"err\n"), (18, "stdout", b"more")]
    frames = output_frames(segs, final=False)
    assert [(s, e, g) for s, e, _, g in frames] == [(10, 14, False), (14, 18, False),
                                                    (18, 22, False)]
    events = parse(b"".join(f[2] for f in frames))
    assert replay(events, 10) == (b"out\nerr\nmore", ["stdout"] * 4 + ["stderr"] * 4
                                  + ["stdout"] * 4, 22)


def test_output_frames_never_end_inside_a_character_while_the_run_is_active():
    data = "caf\u00e9".encode()
    segs = [(0, "stdout", data[:-1]), (4, "stderr", b"later")]
    frames = output_frames(segs, final=False)
    # the frame stops before the half character, and nothing after it is sent yet
    assert [(s, e) for s, e, _, _ in frames] == [(0, 3)]
    assert parse(frames[0][2])[0]["data"]["text"] == "caf"
    # the next read starts there and gets the whole character
    later = output_frames([(3, "stdout", data[3:])], final=False)
    assert parse(later[0][2])[0]["data"] == {"stream": "stdout", "offset": 3,
                                             "text": "\u00e9"}
    # once the run is over nothing more can come: the half character is shown as such
    last = output_frames(segs, final=True)
    assert [(s, e) for s, e, _, _ in last] == [(0, 4), (4, 9)]
    assert parse(last[0][2])[0]["data"]["text"] == "caf\ufffd"


# -- one feed's ring --------------------------------------------------------------------

def lines(n: int, width: int = 64, tag: str = "line") -> bytes:
    return b"".join(f"{tag} {i:07d}".ljust(width - 1).encode() + b"\n" for i in range(n))


def feed_with(chunks: list[bytes], start: int = 0) -> RunFeed:
    """A feed (made on a running loop) holding one frame per chunk, from *start*."""
    feed = RunFeed("r-test")
    pos = start
    for chunk in chunks:
        feed.add(output_frames([(pos, "stdout", chunk)], False), pos + len(chunk))
        pos += len(chunk)
    return feed


def test_take_gives_the_shared_frames_from_a_frame_start():
    async def main():
        chunks = [b"one\n", b"two\n", b"three\n"]
        feed = feed_with(chunks, start=100)
        data, offset = feed.take(104, live=True)
        assert offset == 114
        assert replay(parse(data), 104)[0] == b"two\nthree\n"
        assert feed.take(114, live=True) == (b"", 114)  # at the live edge: nothing yet
        # inside a frame or before the ring: the reader reads the store itself
        assert feed.take(105, live=True) is None
        assert feed.take(0, live=True) is None
        assert feed.catch_up_target(0) == 100 and feed.catch_up_target(105) == 108
    asyncio.run(main())


def test_the_ring_forgets_old_frames_and_readers_there_catch_up_alone():
    async def main():
        chunk = lines(512)  # 32 KiB a frame
        n = 2 * RING_BYTES // len(chunk)
        feed = feed_with([chunk] * n)
        assert feed.ring_bytes <= RING_BYTES
        assert feed.take(0, live=False) is None
        first_kept = feed.catch_up_target(0)
        assert 0 < first_kept < n * len(chunk) and first_kept % len(chunk) == 0
        data, _ = feed.take(first_kept, live=False)
        assert parse(data)[0]["data"]["offset"] == first_kept
    asyncio.run(main())


def test_a_live_reader_far_behind_skips_to_the_last_lines():
    async def main():
        chunk = lines(64)  # 4 KiB frames
        n = (LIVE_BEHIND + LIVE_KEEP) // len(chunk) + 8
        feed = feed_with([chunk] * n)
        end = n * len(chunk)
        target = feed.skip_to(0)
        assert target is not None and target % len(chunk) == 0  # a frame (line) start
        assert LIVE_KEEP <= end - target < LIVE_KEEP + len(chunk)
        # within LIVE_BEHIND it keeps every byte
        assert feed.skip_to(end - LIVE_BEHIND) is None
        assert feed.skip_to(end) is None
    asyncio.run(main())


def test_a_gap_the_feed_made_is_skipped_live_and_read_lossless():
    async def main():
        feed = RunFeed("r-gap")
        feed.add([(0, 4, sse_frame("output", {"stream": "stdout", "offset": 0,
                                              "text": "abc\n"}, 4), False),
                  gap_frame(4, 5000)]
                 + output_frames([(5000, "stdout", b"tail\n")], False), 5005)
        assert feed.skip_to(100) == 5000  # inside the gap: a live reader jumps over it
        live = parse(feed.take(0, live=True)[0])
        assert [e["event"] for e in live] == ["output", "gap", "output"]
        assert replay(live, 0) == (b"abc\ntail\n", ["stdout"] * 9, 5005)
        # a lossless reader stops at the gap and reads the skipped bytes from the store
        lossless, offset = feed.take(0, live=False)
        assert offset == 4 and [e["event"] for e in parse(lossless)] == ["output"]
        assert feed.take(4, live=False) is None
    asyncio.run(main())


# -- the shared feed on a real store ----------------------------------------------------

async def until(predicate, timeout: float = 10.0, what: str = "condition"):
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while loop.time() < deadline:
        value = predicate()
        if value:
            return value
        await asyncio.sleep(0.01)
    raise AssertionError(f"timed out waiting for {what}")


async def step(feeds: Feeds, feed: RunFeed, offset: int, live: bool) -> tuple[bytes, int]:
    """One turn of the run stream handler's loop for one reader."""
    out = b""
    skip = feed.skip_to(offset) if live else None
    if skip is not None:
        out += gap_frame(offset, skip)[2]
        offset = skip
    taken = feed.take(offset, live)
    if taken is None:
        taken = await feeds.read_behind(feed, offset)
    data, offset = taken
    return out + data, offset


async def read_to_end(feeds: Feeds, feed: RunFeed, offset: int, live: bool) -> bytes:
    out = b""
    while not (feed.done and offset >= feed.read_to):
        data, offset = await step(feeds, feed, offset, live)
        out += data
        if not data:
            await asyncio.wait((feed.changed(),), timeout=1.0)
    return out


@pytest.fixture
def run(real_store):
    make_job(real_store, "talker", "@yearly")
    return real_store.request_run("talker")


def with_feeds(store, body, interval: float = 60.0):
    """Run ``body(feeds)`` on a fresh loop. The long *interval* means the feed polls when
    poked (as on a NOTIFY), so each test decides what one poll sees."""
    async def main():
        io = ThreadPoolExecutor(2)
        feeds = Feeds(Operations(store), io, interval=interval)
        try:
            return await asyncio.wait_for(body(feeds), 30)
        finally:
            await feeds.close()
            io.shutdown(wait=True)
    return asyncio.run(main())


async def polled(feeds: Feeds, feed: RunFeed, size: int) -> None:
    feeds.poke()
    await until(lambda: feed.size == size, what="the poll")


def test_a_viewer_gets_new_output_live_never_half_a_character_then_the_end(real_store, run):
    path = real_store.log_path(run.id)
    writer = real_store.output_writer(run.id)
    writer.write("stdout", b"before the viewer came\n")
    seen = 23

    async def body(feeds):
        feed = feeds.watch(run.id)
        await until(lambda: feed.read_to is not None, what="the first poll")
        assert feed.read_to == seen  # a new feed starts at the end of the log
        offset, got = seen, b""
        writer.write("stdout", "h\u00e9".encode()[:2])  # "h" and half of "é"
        await polled(feeds, feed, seen + 2)
        assert feed.read_to == seen + 1  # the feed holds back the half character
        data, offset = await step(feeds, feed, offset, live=True)
        got += data
        assert offset == seen + 1  # the half character waits for the rest
        writer.write("stdout", "h\u00e9".encode()[2:] + b"llo\n")
        writer.write("stderr", b"oops\n")
        await polled(feeds, feed, output.size(path))
        real_store.finish_run(run.id, "succeeded", 0)
        writer.close()
        feeds.changed(run.id)
        feeds.poke()
        got += await read_to_end(feeds, feed, offset, live=True)
        assert feed.final and feed.done and feed.run.status == "succeeded"
        return got

    events = parse(with_feeds(real_store, body))
    data, stream_of, end = replay(events, seen)
    assert data == output.read(path, seen) == "h\u00e9llo\noops\n".encode()
    assert stream_of == streams_of(path, seen) and end == output.size(path)


@pytest.mark.parametrize("resume", ["start", "mid", "char", "end"])
def test_a_reader_resuming_at_an_offset_gets_exactly_the_bytes_after_it(real_store, run,
                                                                          resume):
    """Last-Event-ID on a finished run: from any offset, every later byte once, in its
    stream, across several store batches."""
    writer = real_store.output_writer(run.id)
    for i in range(6):
        writer.write("stdout", lines(800, tag=f"out{i}"))  # 50 KiB
        writer.write("stderr", f"warn {i}: \u26a0 caf\u00e9\n".encode())
    writer.close()
    real_store.finish_run(run.id, "failed", 1)
    path = real_store.log_path(run.id)
    size = output.size(path)
    assert size > 2 * BATCH
    offset = {"start": 0, "mid": 123_456, "char": output.read(path).index("\u26a0".encode()),
              "end": size}[resume]

    async def body(feeds):
        feed = feeds.watch(run.id)
        await until(lambda: feed.read_to is not None, what="the first poll")
        return await read_to_end(feeds, feed, offset, live=False)

    data, stream_of, end = replay(parse(with_feeds(real_store, body)), offset)
    assert end == size
    assert data == output.read(path, offset)
    assert stream_of == streams_of(path, offset)


def test_a_flood_is_skipped_for_live_viewers_with_a_gap_but_kept_for_lossless(real_store, run):
    path = real_store.log_path(run.id)
    writer = real_store.output_writer(run.id)

    async def body(feeds):
        feed = feeds.watch(run.id)
        await until(lambda: feed.read_to is not None, what="the first poll")
        writer.write("stdout", lines(6_000, width=100))  # 600 kB between two polls
        await polled(feeds, feed, output.size(path))
        live = await step(feeds, feed, 0, live=True)
        real_store.finish_run(run.id, "succeeded", 0)
        writer.close()
        feeds.changed(run.id)
        feeds.poke()
        rest = await read_to_end(feeds, feed, live[1], live=True)
        lossless = await read_to_end(feeds, feed, 0, live=False)
        return live[0] + rest, lossless

    live, lossless = with_feeds(real_store, body)
    size, log = output.size(path), output.read(path)
    events = parse(live)
    gap = events[0]
    assert gap["event"] == "gap" and gap["data"]["from"] == 0
    to = gap["data"]["to"]
    assert gap["data"]["bytes"] == to and log[to - 1:to] == b"\n"  # resumes at a line start
    assert size - to <= LIVE_KEEP
    data, _, end = replay(events, 0)
    assert data == log[to:] and end == size
    # a lossless reader is never skipped: every byte, in order
    data, _, end = replay(parse(lossless), 0)
    assert "gap" not in [e["event"] for e in parse(lossless)]
    assert data == log and end == size


def test_a_slow_live_reader_skips_ahead_to_the_recent_lines(real_store, run):
    """The feed kept up (no gap of its own); one reader fell more than LIVE_BEHIND
    behind it: that reader jumps to about LIVE_KEEP before the end, says so with a gap
    event, and carries on from there; a lossless reader still gets every byte."""
    path = real_store.log_path(run.id)
    writer = real_store.output_writer(run.id)
    chunk = lines(1600)  # 100 KiB: less than a batch, so each poll reads all of it

    async def body(feeds):
        feed = feeds.watch(run.id)
        await until(lambda: feed.read_to is not None, what="the first poll")
        for i in range(3):
            writer.write("stdout", chunk)
            await polled(feeds, feed, (i + 1) * len(chunk))
        assert feed.read_to - 0 > LIVE_BEHIND
        slow = await step(feeds, feed, 0, live=True)
        lossless = await step(feeds, feed, 0, live=False)
        writer.close()
        return slow, lossless, feed.read_to

    (slow, offset), (lossless, lossless_offset), read_to = with_feeds(real_store, body)
    log = output.read(path)
    events = parse(slow)
    assert events[0]["event"] == "gap" and events[0]["data"]["from"] == 0
    to = events[0]["data"]["to"]
    assert LIVE_KEEP <= read_to - to <= LIVE_BEHIND and log[to - 1:to] == b"\n"
    data, _, end = replay(events, 0)
    assert data == log[to:read_to] and end == offset
    data, _, end = replay(parse(lossless), 0)
    assert [e["event"] for e in parse(lossless)] == ["output"] * len(parse(lossless))
    assert data == log[:end] and end == lossless_offset > 0


def test_readers_share_one_feed_and_a_shutdown_wakes_them(real_store, run):
    async def body(feeds):
        first, second = feeds.watch(run.id), feeds.watch(run.id)
        assert first is second and first.readers == 2
        await until(lambda: first.read_to is not None, what="the first poll")
        waiting = first.changed()
        await feeds.close()
        await asyncio.wait_for(waiting, 5)  # a reader blocked on the feed is let go
        feeds.unwatch(first)
        feeds.unwatch(second)
        third = feeds.watch(run.id)
        assert third is not first  # the last reader left: the feed was dropped
        feeds.unwatch(third)

    with_feeds(real_store, body)



# -- the events feed of a hub user ------------------------------------------------------

class ViewerIdentity(IdentityProvider):
    """A hub user as the service sees them: ``X-User`` and ``X-Groups`` (comma
    separated) become the request's viewer, as ``server/hub.py`` makes it."""

    def get_user(self, handler):
        name = handler.request.headers.get("X-User")
        if not name:
            return super().get_user(handler)
        user = User(username=name)
        groups = frozenset(g for g in handler.request.headers.get("X-Groups", "").split(",")
                           if g)
        user.hermes_viewer = Viewer(name, groups)
        return user


@pytest.fixture
def jp_server_config(cron_db):  # noqa: F811
    return {"ServerApp": {"jpserver_extensions": {"hermes_cron_ext": True},
                          "identity_provider_class": ViewerIdentity,
                          "disable_check_xsrf": True},
            "HermesCron": {"db": cron_db, "ticker": False}}


def _as(name: str, groups: str = "") -> dict[str, str]:
    return {"X-User": name, "X-Groups": groups, "Authorization": ""}


async def _feed(url_of, who: dict[str, str], last_id: int) -> list[dict]:
    """The events a client resuming after *last_id* gets, up to the ``probe`` job's
    creation (made last by the test, readable by everyone it asks for)."""
    sse = SSE(url_of("events"), who).start({"Last-Event-ID": str(last_id)})
    assert sse.done is not None
    try:
        await sse.wait_for(lambda e: e["event"] == "job.created"
                           and e["data"]["data"].get("name") == "probe", 20)
        return sse.events
    finally:
        sse.done.cancel()


async def test_a_resumed_feed_shows_the_deletion_of_a_job_the_user_could_read(
        cron, jp_fetch, sse_url):  # noqa: F811
    async def call(who, *path, method="GET", body=None):
        resp = await jp_fetch("api", "cron", *path, method=method, headers=who,
                              body=json.dumps(body) if body is not None else None)
        return json.loads(resp.body) if resp.body else None

    alice, carol, bob = _as("alice", "analysts"), _as("carol", "analysts"), _as("bob")
    shared = await call(alice, "jobs", method="POST", body={
        "name": "shared-report", "schedule": "@yearly", "command": "true",
        "shares": {"analysts": "read"}})
    private = await call(alice, "jobs", method="POST", body={
        "name": "alices-secret", "schedule": "@yearly", "command": "true"})
    # carol's feed saw everything up to here; then she goes away
    live = SSE(sse_url("events"), carol).start({"Last-Event-ID": "0"})
    created = await live.wait_for(lambda e: e["event"] == "job.created"
                                  and e["data"]["job_id"] == shared["id"])
    assert live.done is not None
    live.done.cancel()
    last_id = int(created["id"])
    await call(alice, "jobs", shared["id"], method="DELETE")
    await call(alice, "jobs", private["id"], method="DELETE")
    for who in (alice, carol, bob):  # the marker each feed reads up to
        await call(who, "jobs", method="POST", body={
            "name": "probe", "schedule": "@yearly", "command": "true"})

    def deleted(events):
        return {e["data"]["job_id"] for e in events if e["event"] == "job.deleted"}

    # carol, reconnecting, learns the shared job went (her feed never saw it this time)
    carol_sees = await _feed(sse_url, carol, last_id)
    assert deleted(carol_sees) == {shared["id"]}
    # bob never could read either: no deletion, and no name of alice's
    bob_sees = await _feed(sse_url, bob, last_id)
    assert deleted(bob_sees) == set()
    assert "shared-report" not in json.dumps(bob_sees)
    assert "alices-secret" not in json.dumps(bob_sees + carol_sees)
    # the owner learns of both
    assert deleted(await _feed(sse_url, alice, last_id)) == {shared["id"], private["id"]}
