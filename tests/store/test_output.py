"""A run's output log on a real file: stdout, stderr and hermes-cron's own lines kept
apart; every byte offset names one position for good, so a reader resuming anywhere
gets exactly the rest; past the cap the middle is cut and a line says how much; a
multi-byte character split across writes comes out whole; a write the disk refuses
is kept as the writer's ``error`` and nothing after it is written; ``render_text``
shows carriage-return redraws as a terminal would."""

from __future__ import annotations

import errno
import os
import re

import pytest

from hermes_cron_ext.store import output
from hermes_cron_ext.store.output import (
    DEFAULT_MAX_BYTES,
    DEFAULT_TAIL_BYTES,
    OutputWriter,
    render_text,
)

#: the writes of a small run, in the order they arrived
WRITES = [
    ("stdout", b"starting\n"),
    ("stdout", b"step 1 of 3\n"),
    ("stderr", b"warning: disk 91% full\n"),
    ("stdout", "caf\u00e9 \u2615 done\n".encode()),
    ("system", b"[hermes-cron: cancel requested]\n"),
    ("stderr", b"Traceback (most recent call last):\n"),
    ("stdout", b"bye\n"),
]


@pytest.fixture
def log(tmp_path):
    return str(tmp_path / "run.log")


def write_all(path: str, writes=WRITES, **kw) -> OutputWriter:
    writer = OutputWriter(path, **kw)
    for stream, data in writes:
        if stream == "system":
            writer.system(data.decode())
        else:
            writer.write(stream, data)
    writer.close()
    return writer


def stream_of_each_byte(writes) -> list[str]:
    return [stream for stream, data in writes for _ in data]


def test_streams_are_kept_apart_in_segments(log):
    write_all(log)
    assert output.segments(log) == [
        (0, "stdout", b"starting\nstep 1 of 3\n"),  # one stream's writes run together
        (21, "stderr", b"warning: disk 91% full\n"),
        (44, "stdout", "caf\u00e9 \u2615 done\n".encode()),
        (59, "system", b"[hermes-cron: cancel requested]\n"),
        (91, "stderr", b"Traceback (most recent call last):\n"),
        (126, "stdout", b"bye\n"),
    ]
    assert output.read(log) == b"".join(data for _, data in WRITES)
    assert output.size(log) == 130


def test_reading_from_any_offset_gives_exactly_the_rest(log):
    write_all(log)
    full = b"".join(data for _, data in WRITES)
    truth = stream_of_each_byte(WRITES)
    for offset in range(len(full) + 1):
        assert output.read(log, offset) == full[offset:]
        segs = output.segments(log, offset)
        assert b"".join(d for _, _, d in segs) == full[offset:]
        pos = offset
        for start, stream, data in segs:  # contiguous, and each byte in its stream
            assert start == pos and data
            assert set(truth[start:start + len(data)]) == {stream}
            pos += len(data)
    assert output.read(log, len(full) + 10) == b"" and output.segments(log, len(full)) == []


@pytest.mark.parametrize("batch", [1, 5, 17, 64])
def test_a_reader_resuming_in_batches_sees_every_byte_once(log, batch):
    """A viewer reconnecting with the last offset it saw (SSE Last-Event-ID): the
    batches join up to the whole log with nothing lost and nothing repeated."""
    write_all(log)
    got, streams, offset = b"", [], 0
    while True:
        segs = output.segments(log, offset, batch)
        if not segs:
            break
        for start, stream, data in segs:
            assert start == len(got)
            got += data
            streams += [stream] * len(data)
        assert sum(len(d) for _, _, d in segs) <= batch
        offset = len(got)
    assert got == b"".join(data for _, data in WRITES)
    assert streams == stream_of_each_byte(WRITES)


def test_a_live_reader_resumes_while_the_run_still_writes(log):
    writer = OutputWriter(log)
    seen, offset = [], 0

    def catch_up():
        nonlocal offset
        for start, stream, data in output.segments(log, offset):
            assert start == offset
            seen.append((stream, data))
            offset += len(data)
    for stream, data in WRITES[:3]:
        writer.write(stream, data)
    catch_up()
    assert output.size(log) == offset == 44
    catch_up()  # nothing new: nothing repeated
    assert len(seen) == 2
    writer.write("stderr", b"more err\n")  # the stream it was already on
    writer.write("stdout", b"tail\n")
    catch_up()
    writer.close()
    assert seen == [("stdout", b"starting\nstep 1 of 3\n"),
                    ("stderr", b"warning: disk 91% full\n"),
                    ("stderr", b"more err\n"), ("stdout", b"tail\n")]


def test_a_reopened_log_goes_on_at_its_end(log):
    """A second writer on the same log (a retry of the supervisor) appends: the offsets
    already handed to readers keep naming the same bytes."""
    write_all(log, WRITES[:2])
    before = output.read(log)
    writer = OutputWriter(log)
    assert writer.size == len(before)
    writer.write("stderr", b"again\n")
    writer.close()
    assert output.read(log, 0, len(before)) == before
    assert output.segments(log, len(before)) == [(len(before), "stderr", b"again\n")]


def test_a_run_with_no_output_yet_reads_as_empty(tmp_path):
    missing = str(tmp_path / "nothing.log")
    assert (output.read(missing), output.size(missing), output.segments(missing)) == (
        b"", 0, [])


def test_a_half_written_index_entry_is_ignored(log):
    """The reader never trusts a torn last index record (the writer was killed in it)."""
    write_all(log, WRITES[:3])
    with open(log + ".idx", "ab") as f:
        f.write(b"\x05\x00")  # a fragment of a record
    assert [s for _, s, _ in output.segments(log)] == ["stdout", "stderr"]


def test_utf8_characters_split_across_writes_come_out_whole(log):
    text = "na\u00efve \u65e5\u672c\u8a9e \U0001f600!\n"
    data = text.encode()
    writer = OutputWriter(log)
    for i in range(len(data)):  # one byte at a time, as a pipe may deliver them
        writer.write("stdout", data[i:i + 1])
    writer.close()
    assert output.read(log).decode("utf-8") == text
    assert output.segments(log) == [(0, "stdout", data)]


def _lines(prefix: str, n: int, width: int = 32) -> list[bytes]:
    return [f"{prefix} {i:05d}".ljust(width - 1).encode() + b"\n" for i in range(n)]


def test_past_the_cap_head_and_tail_are_kept_and_the_cut_is_said(log):
    max_bytes, tail_bytes = 8 * 1024, 2 * 1024  # head 6 KiB
    lines = _lines("out", 200, 37) + _lines("err", 200, 37)  # 14,800 bytes, lines that
    # do not fit the head or the tail exactly
    writes = [("stdout", line) for line in lines[:200]] + [
        ("stderr", line) for line in lines[200:]]
    writer = OutputWriter(log, max_bytes=max_bytes, tail_bytes=tail_bytes)
    for stream, data in writes:
        writer.write(stream, data)
    # while the run goes on: the head, then a line saying the rest follows at the end
    notice = (b"\n[hermes-cron: output passed 6 KiB; the middle is cut and the last 2 KiB "
              b"follow when the run ends]\n")
    assert output.read(log) == b"".join(lines)[:6 * 1024] + notice
    writer.close()

    full = b"".join(lines)
    cut = len(full) - 6 * 1024 - 2 * 1024
    assert writer.cut == cut
    said = f"[hermes-cron: {cut} bytes cut here]\n".encode()
    data = output.read(log)
    assert data == full[:6 * 1024] + notice + said + full[-2 * 1024:]
    streams = [(s, d) for _, s, d in output.segments(log)]
    assert streams == [("stdout", full[:6 * 1024]), ("system", notice + said),
                       ("stderr", full[-2 * 1024:])]


def test_a_system_line_is_never_cut(log):
    """A timeout or cancel line written while the middle is being cut is on disk at once,
    not lost with the middle."""
    writer = OutputWriter(log, max_bytes=4096, tail_bytes=1024)
    for line in _lines("x", 200):
        writer.write("stdout", line)
    writer.system("[hermes-cron: timed out after 1 s]\n")
    assert output.read(log).endswith(b"[hermes-cron: timed out after 1 s]\n")
    writer.close()
    data = output.read(log)
    assert data.count(b"timed out after 1 s") == 1
    assert data.index(b"timed out") < data.index(b"bytes cut here]")


def test_output_just_under_the_cap_is_not_cut(log):
    writer = OutputWriter(log, max_bytes=4096, tail_bytes=1024)
    writer.write("stdout", b"a" * 3072)  # exactly the head
    writer.close()
    assert output.read(log) == b"a" * 3072 and writer.cut == 0


def test_the_default_cap_keeps_the_head_and_the_last_two_mebibytes(log):
    assert OutputWriter(log).head_limit == DEFAULT_MAX_BYTES - DEFAULT_TAIL_BYTES
    chunk = 64 * 1024
    extra = 3 * chunk
    n = (DEFAULT_MAX_BYTES + extra) // chunk
    writer = OutputWriter(log)
    for i in range(n):
        writer.write("stdout", bytes([65 + i % 26]) * chunk)
    writer.close()
    data = output.read(log)
    assert writer.cut == extra
    assert f"[hermes-cron: {extra} bytes cut here]\n".encode() in data
    assert data.endswith(bytes([65 + (n - 1) % 26]) * chunk)
    notes = len(data) - DEFAULT_MAX_BYTES
    assert 0 < notes < 300  # the cap holds, give or take the two lines that say so


def test_a_write_the_disk_refuses_is_reported_and_nothing_after_it_written(tmp_path):
    """The log on a full disk (``/dev/full``: every write fails with ENOSPC): the first
    error is kept in ``writer.error`` for the supervisor, later writes are dropped, and
    closing does not raise."""
    if not os.path.exists("/dev/full"):
        pytest.skip("no /dev/full here")
    log = str(tmp_path / "run.log")
    os.symlink("/dev/full", log)
    writer = OutputWriter(log)
    assert writer.error is None
    writer.write("stdout", b"hello\n")
    assert isinstance(writer.error, OSError) and writer.error.errno == errno.ENOSPC
    first = writer.error
    writer.write("stderr", b"more\n")
    writer.system("[hermes-cron: timed out]\n")
    assert writer.error is first and writer.size == 0
    writer.close()


def test_an_index_the_disk_refuses_leaves_no_untagged_bytes(tmp_path):
    """The stream switch is written before its bytes: when it cannot be, the bytes are
    not written either, so a reader never sees output in the wrong stream."""
    if not os.path.exists("/dev/full"):
        pytest.skip("no /dev/full here")
    log = str(tmp_path / "run.log")
    os.symlink("/dev/full", log + ".idx")
    writer = OutputWriter(log)
    writer.write("stderr", b"secret error\n")
    writer.close()
    assert writer.error is not None and writer.error.errno == errno.ENOSPC
    assert output.read(log) == b""


def test_a_log_that_cannot_be_opened_raises_at_once(tmp_path):
    with pytest.raises(FileNotFoundError):
        OutputWriter(str(tmp_path / "no-such-folder" / "run.log"))


@pytest.mark.parametrize(("raw", "shown"), [
    ("10%\r50%\r100%\n", "100%\n"),  # a progress bar redrawn in place
    ("downloading...\rdone\n", "doneloading...\n"),  # a shorter redraw leaves the rest
    ("abc\r\nnext", "abc\nnext"),  # Windows line ends
    ("ab\bc", "ac"),  # a backspace steps back one column
    ("\b\bx", "x"),  # never before the line start
    ("one\ntwo\rTWO\nthree", "one\nTWO\nthree"),  # a redraw touches its own line only
    ("", ""),
])
def test_render_text_applies_carriage_returns_like_a_terminal(raw, shown):
    assert render_text(raw) == shown


def test_render_text_leaves_ansi_colours_for_the_renderer():
    """Colours are not stripped (the terminal view turns them into classes); a coloured
    bar redrawn at the same width ends in its last state."""
    coloured = "\x1b[31mred\x1b[0m plain\n"
    assert render_text(coloured) == coloured
    bar = "\x1b[32m 10%\x1b[0m\r\x1b[32m 90%\x1b[0m\r\x1b[32m100%\x1b[0m"
    assert render_text(bar) == "\x1b[32m100%\x1b[0m"


_CSI = re.compile(r"\x1b\[[0-9;?]*[@-~]")


@pytest.mark.parametrize(("raw", "visible"), [
    ("\x1b[33mworking...\x1b[0m\rdone      \n", "done      \n"),
    ("\x1b[31mred\x1b[0m\rX", "Xed"),
])
def test_render_text_redraw_over_a_coloured_line_shows_what_a_terminal_shows(raw, visible):
    """What a terminal shows (colour codes take no columns), once the colours are
    dropped: no leftovers of the old line, no half escape sequences."""
    assert _CSI.sub("", render_text(raw)) == visible
