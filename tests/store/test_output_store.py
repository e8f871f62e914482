"""The ``OutputStore`` contract, through the store alone (where the bytes live is the
backend's: files beside SQLite, rows in PostgreSQL): a run's output read back by byte
offset and by stream, from another connection while it is written; capped with head,
tail and a line saying what was cut; a notebook's artifact read from any store once
its log is closed; both gone with their run.

Every test runs against every store (SQLite and PostgreSQL), on a fake clock.
(The file format itself: test_output.py; PostgreSQL's rows against a file:
test_postgres.py.)
"""

from __future__ import annotations

from tests.conftest import make_job
from tests.store.contract import EVERY_BACKEND, run_to_end

pytestmark = EVERY_BACKEND

DATA = b"hello\noops\nbye\n[hermes-cron: done]\n"


def _run(store, name="out"):
    make_job(store, name, "@yearly")
    return store.request_run(name)


def test_output_is_read_back_by_offset_and_by_stream(store):
    run = _run(store)
    assert store.output_size(run.id) == 0
    assert store.read_output(run.id) == b"" and store.output_segments(run.id) == []
    writer = store.output_writer(run.id)
    writer.write("stdout", b"hello\n")
    writer.write("stderr", b"oops\n")
    writer.write("stdout", b"bye\n")
    writer.system("[hermes-cron: done]\n")
    writer.close()
    assert store.read_output(run.id) == DATA and store.output_size(run.id) == len(DATA)
    assert store.output_segments(run.id) == [
        (0, "stdout", b"hello\n"), (6, "stderr", b"oops\n"), (11, "stdout", b"bye\n"),
        (15, "system", b"[hermes-cron: done]\n")]
    for offset, limit in ((0, 3), (4, 5), (7, None), (len(DATA), 10), (len(DATA) + 5, None)):
        end = None if limit is None else offset + limit
        assert store.read_output(run.id, offset, limit) == DATA[offset:end]
    assert store.output_segments(run.id, 4, 5) == [(4, "stdout", b"o\n"), (6, "stderr", b"oop")]
    assert store.output_segments(run.id, 12, 2) == [(12, "stdout", b"ye")]


def test_a_reader_elsewhere_follows_the_log_while_it_is_written(open_test_store, store):
    run = _run(store)
    reader = open_test_store()  # another process, or another host
    writer = store.output_writer(run.id)
    seen, offset = b"", 0
    for i in range(5):
        writer.write("stderr" if i % 2 else "stdout", f"line {i}\n".encode())
        got = reader.read_output(run.id, offset)
        assert got == f"line {i}\n".encode()  # each write is readable at once
        seen, offset = seen + got, offset + len(got)
    writer.close()
    assert seen == store.read_output(run.id) and reader.output_size(run.id) == offset
    assert [s[1] for s in reader.output_segments(run.id)] == [
        "stdout", "stderr", "stdout", "stderr", "stdout"]


def test_past_its_cap_a_log_keeps_head_and_tail_and_says_what_was_cut(store):
    run = _run(store)
    writer = store.output_writer(run.id, max_bytes=1000)  # a 200-byte tail
    for i in range(150):
        writer.write("stdout", f"{i:04d}-----\n".encode())  # 10 bytes each: 1,500
    writer.close()
    data = store.read_output(run.id)
    head, cut, tail = data.partition(b"[hermes-cron: 500 bytes cut here]\n")
    assert head.startswith(b"0000-----\n0001") and b"0079-----\n" in head
    assert b"0080" not in head and b"the middle is cut" in head
    assert tail == b"".join(f"{i:04d}-----\n".encode() for i in range(130, 150))
    assert store.output_size(run.id) == len(data)
    segments = store.output_segments(run.id)
    assert [s[1] for s in segments] == ["stdout", "system", "stdout"]
    assert segments[1][0] == 800 and segments[2][2] == tail


def test_an_artifact_is_read_from_any_store_and_goes_with_its_run(open_test_store, store):
    run = _run(store, "nb")
    assert store.read_artifact(run.id) is None
    with open(store.artifact_path(run.id), "wb") as f:
        f.write(b'{"cells": []}')
    writer = store.output_writer(run.id)
    writer.write("stdout", b"ran\n")
    writer.close()  # the supervisor closes the log when the run ends
    assert open_test_store().read_artifact(run.id) == b'{"cells": []}'
    run_to_end(store, run)
    store.delete_job("nb")  # its finished runs go, with their output
    assert store.read_artifact(run.id) is None
    assert store.output_size(run.id) == 0 and store.read_output(run.id) == b""
