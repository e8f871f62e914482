"""Live output for many viewers: each run's new output is read once and shared.

A :class:`RunFeed` per watched run holds a small ring of ready-to-send SSE
``output`` frames (``id`` = the byte offset after the frame). One polling task
(:class:`Feeds`) checks every watched run's output size each ``interval``, reads
what is new once (off the event loop), encodes it once and wakes the readers.
A reader at the live edge just writes the shared bytes; a reader that is behind
(a resume, a slow client that fell off the ring) reads the log itself, in
bounded batches, until it catches up. So a hundred viewers cost one read and one
``json.dumps`` per chunk, and a slow or vanished viewer holds at most one batch.

Live viewers keep up rather than fall behind (a runaway payload can print far more
than a hundred sockets carry). While a run is active, the feed never lags the log by
more than a batch, and a live reader never by more than ``LIVE_BEHIND`` bytes: each
skips ahead to a line start near the end and says so with a ``gap`` event (``from``,
``to``, ``bytes``; its ``id`` is the offset after the gap, so resuming still works).
Nothing is lost from the log: ``GET /runs/{id}/log`` has every byte, and a stream
opened with ``?lossless=1`` (or on a finished run) replays every byte at its reader's
pace instead.

Run status and progress come from the event bus: a ``run.*`` event marks the feed
stale and the next poll refreshes its cached :class:`~hermes_cron_ext.domain.models.Run`.

Every read goes through the operations (:class:`~hermes_cron_ext.ops.local.Operations`:
``get_run``, ``log_size``, ``log_bytes``, ``segments``), on the I/O threads, never on
the event loop.
"""

from __future__ import annotations

import asyncio
import bisect
import json
from concurrent.futures import ThreadPoolExecutor

from hermes_cron_ext.domain.models import ACTIVE_STATUSES, Run
from hermes_cron_ext.domain.text import utf8_boundary
from hermes_cron_ext.ops.local import Operations

BATCH = 128 * 1024  # most bytes read for one feed or reader at a time
RING_BYTES = 1024 * 1024  # frames kept per run for readers at the live edge
TAKE_BYTES = 128 * 1024  # most shared frame bytes one reader takes at a time
LIVE_BEHIND = 128 * 1024  # a live reader further behind the feed than this skips ahead
LIVE_KEEP = 32 * 1024  # ... to about this far behind it (the recent lines stay shown)


def sse_frame(name: str, data, id_: int | str | None = None) -> bytes:
    head = f"event: {name}\n" + (f"id: {id_}\n" if id_ is not None else "")
    return (head + f"data: {json.dumps(data)}\n\n").encode()


def gap_frame(start: int, end: int) -> tuple[int, int, bytes, bool]:
    """The ring entry (and SSE event) for output a live view skipped."""
    return start, end, sse_frame("gap", {"from": start, "to": end, "bytes": end - start},
                                 end), True


def output_frames(segments: list[tuple[int, str, bytes]], final: bool
                  ) -> list[tuple[int, int, bytes, bool]]:
    """``(start, end, frame, is_gap)`` per segment; never splits a character unless
    *final*."""
    out = []
    for start, stream, data in segments:
        cut = len(data) if final else utf8_boundary(data)
        if cut:
            end = start + cut
            out.append((start, end, sse_frame("output", {
                "stream": stream, "offset": start,
                "text": data[:cut].decode("utf-8", "replace")}, end), False))
        if cut < len(data):
            break
    return out


class RunFeed:
    """One watched run: its cached state and a ring of ready frames, contiguous by
    offset (``start`` of each = ``end`` of the one before), found by bisection so that
    a hundred readers cost a hundred lookups, not a hundred scans of the ring."""

    def __init__(self, run_id: str):
        self.run_id = run_id
        self.readers = 0
        self._frames: list[tuple[int, int, bytes, bool]] = []  # from index _head on
        self._starts: list[int] = []
        self._head = 0
        self.ring_bytes = 0
        self.read_to: int | None = None  # output up to here is in frames (or was)
        self.run: Run | None = None
        self.size = 0  # output size at the last poll
        self.stale = True  # the cached run needs a refresh
        self._changed = asyncio.get_running_loop().create_future()

    @property
    def done(self) -> bool:
        """The run is over and every byte of its output is in frames."""
        return self.final and self.read_to is not None and self.read_to >= self.size

    @property
    def final(self) -> bool:
        return self.run is not None and self.run.status not in ACTIVE_STATUSES

    # -- waking readers: one shared future, replaced at each change --------------------
    def changed(self) -> asyncio.Future:
        """Resolves at the feed's next change (output, run state, shutdown)."""
        return self._changed

    def notify(self) -> None:
        fut, self._changed = self._changed, asyncio.get_running_loop().create_future()
        fut.set_result(None)

    # -- the ring ------------------------------------------------------------------
    def _index(self, offset: int) -> int:
        """Index of the first frame that starts at or after *offset*."""
        return bisect.bisect_left(self._starts, offset, self._head)

    def _next_start(self, offset: int) -> int | None:
        i = self._index(offset)
        return self._starts[i] if i < len(self._starts) else self.read_to

    def take(self, offset: int, live: bool) -> tuple[bytes, int] | None:
        """Shared frames from *offset* on (at most about ``TAKE_BYTES``), or None when the
        reader must read the log (it is behind the ring, or lossless at a gap)."""
        if self.read_to is None or offset >= self.read_to:
            return b"", offset
        i = self._index(offset)
        if i == len(self._starts) or self._starts[i] != offset:
            return None
        parts, size = [], 0
        for k in range(i, len(self._frames)):
            _, end, frame, gap = self._frames[k]
            if gap and not live:
                break
            parts.append(frame)
            offset, size = end, size + len(frame)
            if size >= TAKE_BYTES:
                break
        return (b"".join(parts), offset) if parts else None

    def skip_to(self, offset: int) -> int | None:
        """Where a live reader at *offset* jumps to keep up, or None when it need not:
        it is more than ``LIVE_BEHIND`` behind, or inside a gap the feed skipped."""
        if self.read_to is None or offset >= self.read_to:
            return None
        if self.read_to - offset > LIVE_BEHIND:
            # the newest frames, back to LIVE_KEEP bytes (at least one, never a gap)
            target = self.read_to
            for k in range(len(self._frames) - 1, self._head - 1, -1):
                start, _, _, gap = self._frames[k]
                if gap or start <= offset:
                    break
                target = start
                if self.read_to - start >= LIVE_KEEP:
                    break
            return target
        k = bisect.bisect_right(self._starts, offset, self._head) - 1
        if k >= self._head:
            _, end, _, gap = self._frames[k]
            if gap and offset < end:
                return end
        return None

    def catch_up_target(self, offset: int) -> int:
        """Where a reader that is behind should stop reading on its own."""
        target = self._next_start(offset + 1)
        return target if target is not None else offset

    def add(self, frames: list[tuple[int, int, bytes, bool]], read_to: int) -> None:
        for item in frames:
            self._frames.append(item)
            self._starts.append(item[0])
            self.ring_bytes += len(item[2])
        self.read_to = read_to
        while self.ring_bytes > RING_BYTES and len(self._frames) - self._head > 1:
            self.ring_bytes -= len(self._frames[self._head][2])
            self._head += 1
        if self._head > 256 and self._head * 2 > len(self._frames):
            del self._frames[:self._head], self._starts[:self._head]
            self._head = 0


class Feeds:
    """Every watched run's feed, refreshed by one polling task."""

    def __init__(self, ops: Operations, io: ThreadPoolExecutor, interval: float = 0.01):
        self.ops = ops  # synchronous: called on the io pool only
        self.io = io
        self.interval = interval
        self._feeds: dict[str, RunFeed] = {}
        self._task: asyncio.Task | None = None
        self._poke = asyncio.Event()
        self.closed = False

    def poke(self) -> None:
        """Output grew somewhere (a NOTIFY): poll now rather than at the next interval."""
        self._poke.set()

    def watching(self) -> bool:
        return bool(self._feeds)

    def watch(self, run_id: str) -> RunFeed:
        feed = self._feeds.get(run_id)
        if feed is None:
            feed = self._feeds[run_id] = RunFeed(run_id)
        feed.readers += 1
        if self._task is None or self._task.done():
            self._task = asyncio.create_task(self._loop(), name="hermes-cron-feeds")
        return feed

    def unwatch(self, feed: RunFeed) -> None:
        feed.readers -= 1
        if feed.readers <= 0 and self._feeds.get(feed.run_id) is feed:
            del self._feeds[feed.run_id]

    def changed(self, run_id: str) -> None:
        """A run event arrived (from the event bus): refresh the run at the next poll."""
        feed = self._feeds.get(run_id)
        if feed is not None:
            feed.stale = True

    async def close(self) -> None:
        self.closed = True
        for feed in list(self._feeds.values()):
            feed.notify()
        if self._task is not None:
            self._task.cancel()

    async def read_behind(self, feed: RunFeed, offset: int) -> tuple[bytes, int]:
        """Frames for a reader that is behind the ring, read from the log by itself."""
        target = feed.catch_up_target(offset)
        if target <= offset:
            return b"", offset
        final = feed.final

        def read():
            segs = self.ops.segments(feed.run_id, offset, min(BATCH, target - offset))
            return output_frames(segs, final or offset + BATCH >= target)
        frames = await asyncio.get_running_loop().run_in_executor(self.io, read)
        if not frames:
            return b"", offset
        return b"".join(f[2] for f in frames), frames[-1][1]

    def _poll(self, feeds: list[RunFeed], refresh: set[str]) -> list[tuple]:
        """On the io pool: each feed's refreshed run (if asked), new frames, and size.

        The run is read before the size, so once it is final every byte is counted."""
        out = []
        for feed in feeds:
            run = (self.ops.get_run(feed.run_id)
                   if feed.run_id in refresh or feed.run is None else feed.run)
            size = self.ops.log_size(feed.run_id)
            start = feed.read_to
            if start is None:  # a new feed starts at the end, on a character boundary
                tail = b"" if run.status not in ACTIVE_STATUSES else None
                if tail is None:
                    tail = self.ops.log_bytes(feed.run_id, max(0, size - 4), 4)
                start = size - (len(tail) - utf8_boundary(tail))
            frames = []
            if run.status in ACTIVE_STATUSES and size - start > BATCH:
                # a flood: skip to a line start just before the end (live views keep
                # up; the log keeps every byte)
                skip = size - LIVE_KEEP
                head = self.ops.log_bytes(feed.run_id, skip, 4096)
                newline = head.find(b"\n")
                skip += newline + 1 if newline >= 0 else 0
                frames.append(gap_frame(start, skip))
                start = skip
            if size > start:
                segs = self.ops.segments(feed.run_id, start, min(BATCH, size - start))
                frames += output_frames(segs, run.status not in ACTIVE_STATUSES)
            out.append((feed, run, frames, frames[-1][1] if frames else start, size))
        return out

    async def _loop(self) -> None:
        loop = asyncio.get_running_loop()
        while self._feeds and not self.closed:
            feeds = list(self._feeds.values())
            refresh = {f.run_id for f in feeds if f.stale}
            for feed in feeds:
                feed.stale = False  # an event during this poll marks it again
            try:
                results = await loop.run_in_executor(self.io, self._poll, feeds, refresh)
            except Exception:
                results = []
                for feed in feeds:
                    feed.stale = True
            for feed, run, frames, read_to, size in results:
                old = feed.run
                woke = bool(frames) or feed.read_to is None or old is None or (
                    run.status, run.phase, run.progress) != (old.status, old.phase,
                                                             old.progress)
                feed.run = run
                feed.size = size
                feed.add(frames, read_to)
                if woke:
                    feed.notify()
            try:
                await asyncio.wait_for(self._poke.wait(), self.interval)
            except TimeoutError:
                pass
            self._poke.clear()
