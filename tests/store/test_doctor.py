"""A broken store file, as the CLI tells it: one line naming the file, and ``doctor``."""

from __future__ import annotations

import sqlite3
import subprocess
import sys


def hermes(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "hermes_cron_ext", *args],
                          capture_output=True, text=True, timeout=60)


def test_a_corrupt_store_is_named_in_one_line_and_doctor_says_why(tmp_path):
    db = tmp_path / "cron.db"
    db.write_bytes(b"garbage" * 2000)
    listed = hermes("--db", str(db), "list")
    assert listed.returncode == 1 and "Traceback" not in listed.stderr
    assert listed.stderr.strip().splitlines() == [
        f"hermes-cron: error: store {db} is not a usable database: file is not a database "
        f"(check it with: hermes-cron --db {db} doctor)"]
    checked = hermes("--db", str(db), "doctor")
    assert checked.returncode == 1
    assert checked.stdout.strip() == f"{db}: not a usable SQLite database: file is not a database"
    assert db.read_bytes() == b"garbage" * 2000  # nothing written to it


def test_doctor_passes_a_healthy_store_and_finds_a_damaged_page(tmp_path):
    db = tmp_path / "cron.db"
    assert hermes("--db", str(db), "add", "j", "@daily", "--", "true").returncode == 0
    ok = hermes("--db", str(db), "doctor")
    assert (ok.returncode, ok.stdout.strip()) == (0, f"{db}: ok (SQLite quick_check)")
    conn = sqlite3.connect(db)  # fold the WAL in, then find the jobs table's first page
    conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    page = conn.execute("PRAGMA page_size").fetchone()[0]
    root = conn.execute("SELECT rootpage FROM sqlite_master WHERE name = 'jobs'").fetchone()[0]
    conn.close()
    data = bytearray(db.read_bytes())
    data[(root - 1) * page] = 0x00  # not a valid b-tree page type any more
    db.write_bytes(bytes(data))
    bad = hermes("--db", str(db), "doctor")
    assert bad.returncode == 1 and bad.stdout.startswith(f"{db}: "), bad.stdout
    assert "malformed" in bad.stdout or "quick_check found problems" in bad.stdout
