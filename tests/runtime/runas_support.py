"""What the run-as tests share (tests/runtime/test_runas.py, test_runas_runtime.py): real
Unix accounts made here with useradd, removed afterwards; both need root."""

from __future__ import annotations

import os
import pwd
import shutil
import subprocess
import tempfile

import pytest

NEEDS_ROOT = [
    pytest.mark.accounts,  # make accounts (and .ci/run), not the normal suite
    pytest.mark.skipif(os.geteuid() != 0, reason="needs root: it makes Unix accounts and "
                                                 "starts the run-as helper as root"),
    pytest.mark.skipif(shutil.which("useradd") is None, reason="needs useradd (passwd)"),
]

ALICE, BOB, SYSTEM, TEAM = "hc-alice", "hc-bob", "hc-sys", "hc-team"
TOOR = "hc-toor"  # uid 0 by another name (locked: useradd sets no password)


def quiet(*argv: str) -> None:
    subprocess.run(argv, capture_output=True, check=False)


def drop_accounts() -> None:
    for name in (ALICE, BOB, SYSTEM):
        quiet("userdel", "-r", name)
    quiet("userdel", "-f", TOOR)  # -f: processes run as uid 0, of course
    quiet("groupdel", TEAM)


@pytest.fixture(scope="module")
def accounts():
    """hc-alice (also in hc-team) and hc-bob with homes (0700) under a temp folder, and
    hc-sys, a system account (uid < UID_MIN); all removed afterwards."""
    drop_accounts()  # what a killed earlier run left
    base = tempfile.mkdtemp(prefix="hc-runas-homes-")
    os.chmod(base, 0o755)
    try:
        subprocess.run(["groupadd", TEAM], check=True)
        subprocess.run(["useradd", "-m", "-d", f"{base}/{ALICE}", "-s", "/bin/sh",
                        "-G", TEAM, ALICE], check=True)
        subprocess.run(["useradd", "-m", "-d", f"{base}/{BOB}", "-s", "/bin/sh", BOB],
                       check=True)
        subprocess.run(["useradd", "-r", "-M", "-s", "/usr/sbin/nologin", SYSTEM],
                       check=True)
        for name in (ALICE, BOB):
            os.chmod(pwd.getpwnam(name).pw_dir, 0o700)
        yield {name: pwd.getpwnam(name) for name in (ALICE, BOB, SYSTEM)}
    finally:
        drop_accounts()
        shutil.rmtree(base, ignore_errors=True)
