"""Faults told truly: a disk that fills up under a running scheduler (a real tmpfs)."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time

import pytest

from hermes_cron_ext.store import SQLiteStore
from tests.conftest import wait_for


@pytest.fixture
def small_disk(tmp_path):
    """An 8 MiB tmpfs (root only: CI runs as root)."""
    mnt = tmp_path / "disk"
    mnt.mkdir()
    if os.geteuid() != 0:
        pytest.skip("mounting a small tmpfs needs root")
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=8m", "tmpfs", str(mnt)],
                          capture_output=True, text=True)
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {done.stderr.strip()}")
    yield mnt
    subprocess.run(["umount", "-l", str(mnt)], capture_output=True)


def hermes(env, *args):
    return subprocess.run([sys.executable, "-m", "hermes_cron_ext", *args], env=env,
                          capture_output=True, text=True, timeout=60)


@pytest.mark.slow
def test_a_full_disk_fails_the_run_with_the_real_reason_and_loses_nothing(small_disk):
    db = small_disk / "store" / "cron.db"
    env = {**os.environ, "HERMES_CRON_DB": str(db), "HERMES_CRON_HEARTBEAT": "0.5"}
    assert hermes(env, "add", "flood", "@yearly", "--", "sh", "-c",
                  "head -c 30000000 /dev/zero | tr '\\0' x; sleep 60").returncode == 0
    assert hermes(env, "add", "other", "@every 2s", "--", "echo", "hi").returncode == 0
    filler = small_disk / "filler"  # what the operator deletes to recover
    filler.write_bytes(b"\0" * (2 << 20))
    daemon = subprocess.Popen([sys.executable, "-m", "hermes_cron_ext", "daemon"],
                              env=env, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                              stderr=subprocess.PIPE, start_new_session=True)
    store = SQLiteStore(str(db))
    try:
        wait_for(lambda: store.list_runs("other").items, 20, what="the daemon to fire")
        assert hermes(env, "run", "flood").returncode == 0
        wait_for(lambda: shutil.disk_usage(small_disk).free < 64 << 10, 30, what="disk full")
        time.sleep(3)  # the scheduler runs on a full disk for a while
        filler.unlink()  # the operator makes room
        flood = wait_for(lambda: next((r for r in store.list_runs("flood").items
                                       if r.status not in ("queued", "running")), None),
                         60, what="the flooding run to end")
        assert flood.status == "failed", (flood.status, flood.reason)
        assert "cannot write the run's output: No space left on device" in flood.reason
        time.sleep(3)  # the other job fires again once there is room
        runs = store.list_runs("other", limit=200).items
        assert runs and not [r for r in runs if r.status == "lost"], [
            (r.status, r.reason) for r in runs]
        assert any(r.status == "succeeded" and r.started_at > flood.finished_at for r in runs)
        assert daemon.poll() is None  # the ticker lived through it
    finally:
        store.close()
        daemon.send_signal(signal.SIGTERM)
        try:
            daemon.wait(15)
        except subprocess.TimeoutExpired:
            daemon.kill()
        err = daemon.stderr.read().decode(errors="replace")
        daemon.stderr.close()
    assert "internal error" not in err, err[-3000:]
    assert err.count("Traceback") <= 1, err[-3000:]  # told once, not on every pass


def test_a_read_only_store_folder_is_told_and_loses_nothing(small_disk, tmp_path):
    """A store whose file system turned read-only (a failing disk, a wrong mount): the
    CLI says so in one line, the server's API answers 503 with the reason, nothing is
    changed, and once the folder is writable again every job is there."""
    from tests.server.test_app import Server

    db = small_disk / "store" / "cron.db"
    env = {**os.environ, "HERMES_CRON_DB": str(db)}
    assert hermes(env, "add", "kept", "@daily", "--", "true").returncode == 0
    subprocess.run(["mount", "-o", "remount,ro", str(small_disk)], check=True)
    try:
        listed = hermes(env, "list")
        assert listed.returncode == 1 and "Traceback" not in listed.stderr
        assert listed.stderr.strip().splitlines() == [
            f"hermes-cron: error: store {db} cannot be written (unable to open database "
            f"file): its folder {db.parent} must be writable (SQLite keeps its -wal and "
            "-shm files there, and runs' logs go to logs/); nothing in it was changed"]
        elsewhere = hermes({**env, "HERMES_CRON_DB": str(small_disk / "new" / "c.db")},
                           "list")
        assert elsewhere.returncode == 1 and "cannot make the store folder" in \
            elsewhere.stderr and "Read-only file system" in elsewhere.stderr
        srv = Server(tmp_path, str(db), wait=False)
        try:
            code, body = wait_for(srv.refusal, 60, 0.2, "the server")
            assert code == 503 and "must be writable" in body["error"]["message"]
        finally:
            srv.kill()
    finally:
        subprocess.run(["mount", "-o", "remount,rw", str(small_disk)], check=True)
    assert [j["name"] for j in json.loads(hermes(env, "list", "--json").stdout)["jobs"]] == [
        "kept"]
