"""Plumbing for the peers that are not Jupyter extensions: Apache Airflow, APScheduler 4
and APScheduler 3.11.

Each comes from PyPI into a scratch venv of its own under ``bench/compare/`` (git-ignored,
reused when it works); neither is a dependency of this project, and none of their code is
in this repository. Nothing here measures anything; ``run.py`` holds the figures.
"""

from __future__ import annotations

import json
import os
import secrets
import sqlite3
import subprocess
import time

from harness import (
    HERE,
    Client,
    ensure_peer_venv,
    free_port,
    kill_sessions,
    log,
    venv_python,
)

AIRFLOW_SPEC = os.environ.get("HERMES_COMPARE_AIRFLOW_SPEC", "apache-airflow==3.3.2")
AIRFLOW_VENV = os.environ.get("HERMES_COMPARE_AIRFLOW_VENV", os.path.join(HERE, ".venv-airflow"))
APS_SPECS = ["apscheduler==4.0.0a6", "sqlalchemy[asyncio]==2.1.9", "aiosqlite==0.22.1",
             "sniffio==1.3.1"]  # 4.0.0a6 imports sniffio without declaring it
APS_VENV = os.environ.get("HERMES_COMPARE_APS_VENV", os.path.join(HERE, ".venv-apscheduler"))
APS_WORKER = os.path.join(HERE, "aps_worker.py")
APS3_SPECS = ["apscheduler==3.11.3", "sqlalchemy==2.1.9", "tzlocal==5.4.5"]
APS3_VENV = os.environ.get("HERMES_COMPARE_APS3_VENV",
                           os.path.join(HERE, ".venv-apscheduler3"))
APS3_WORKER = os.path.join(HERE, "aps3_worker.py")


def ensure_airflow() -> tuple[str, float]:
    return ensure_peer_venv(AIRFLOW_VENV, [AIRFLOW_SPEC],
                            "import airflow; print(airflow.__version__)",
                            AIRFLOW_SPEC.partition("==")[2])


def ensure_aps() -> tuple[str, float]:
    return ensure_peer_venv(
        APS_VENV, APS_SPECS,
        "import sniffio, aiosqlite, greenlet; from importlib.metadata import version; "
        "import apscheduler.datastores.sqlalchemy; print(version('apscheduler'))",
        APS_SPECS[0].partition("==")[2])


def ensure_aps3() -> tuple[str, float]:
    return ensure_peer_venv(
        APS3_VENV, APS3_SPECS,
        "from importlib.metadata import version; import apscheduler.jobstores.sqlalchemy; "
        "print(version('apscheduler'))", APS3_SPECS[0].partition("==")[2])


def read_triples(path: str) -> list[tuple[float, float, str]]:
    """Lines ``<clock> <slot> <tag>`` a payload appended (none when the file is not
    there yet)."""
    try:
        with open(path) as f:
            rows = [line.split() for line in f]
    except OSError:
        return []
    return [(float(a), float(b), c) for a, b, c in rows]


# -- Apache Airflow ----------------------------------------------------------------------------

CLOCK_DAG = '''\
"""hermes-cron-ext comparison: the payload records the clock as its first instruction."""
import time
from datetime import datetime, timedelta

from airflow.sdk import dag, task

OUT = {out!r}


@dag(dag_id="clock", schedule=timedelta(seconds={period}), start_date=datetime(2026, 1, 1),
     catchup=False, is_paused_upon_creation=False)
def clock():
    @task
    def tick(dag_run=None):
        t = time.time()
        with open(OUT, "a") as f:
            f.write(f"{{t}} {{dag_run.run_after.timestamp()}} {{dag_run.run_id}}\\n")

    tick()


clock()
'''

FLEET_DAG = '''\
"""hermes-cron-ext comparison: N yearly DAGs (N read from fleet.txt beside this file)."""
import os
from datetime import datetime

from airflow.providers.standard.operators.empty import EmptyOperator
from airflow.sdk import DAG

try:
    with open(os.path.join(os.path.dirname(__file__), "fleet.txt")) as f:
        N = int(f.read())
except OSError:
    N = 0
for i in range(N):
    with DAG(f"fleet_{{i:05d}}", schedule="0 3 1 1 *", start_date=datetime(2030, 1, 1),
             catchup=False, is_paused_upon_creation=False) as d:
        EmptyOperator(task_id="noop")
    globals()[d.dag_id] = d
'''

COMPONENTS = {  # name -> argv after ``airflow``
    "api-server": ["api-server"],
    "scheduler": ["scheduler", "--skip-serve-logs"],
    "dag-processor": ["dag-processor"],
    "triggerer": ["triggerer", "--skip-serve-logs"],
}


class Airflow:
    """Airflow 3 on SQLite in a temp AIRFLOW_HOME: what ``airflow standalone`` runs
    (api-server, scheduler with LocalExecutor, dag-processor, triggerer), started one by
    one so that the API binds 127.0.0.1 and the log servers (which bind every interface)
    stay off. Each component runs in a session of its own; cleanup kills those sessions."""

    label = "Airflow"

    def __init__(self, root: str, env: dict[str, str], period: float):
        self.root = root
        self.home = os.path.join(root, "home")
        self.dags = os.path.join(root, "dags")
        self.db = os.path.join(root, "airflow.db")
        self.ticks = os.path.join(root, "ticks.txt")
        os.makedirs(self.home, exist_ok=True)
        os.makedirs(self.dags, exist_ok=True)
        self.port = free_port()
        self.env = {
            **env,
            "PATH": os.path.join(AIRFLOW_VENV, "bin") + os.pathsep + env.get("PATH", ""),
            "AIRFLOW_HOME": self.home,
            "AIRFLOW__CORE__DAGS_FOLDER": self.dags,
            "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
            "AIRFLOW__CORE__EXECUTOR": "LocalExecutor",
            "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"sqlite:///{self.db}",
            "AIRFLOW__API__HOST": "127.0.0.1",
            "AIRFLOW__API__PORT": str(self.port),
            "AIRFLOW__CORE__EXECUTION_API_SERVER_URL":
                f"http://127.0.0.1:{self.port}/execution/",
            "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS": "bench:admin",
            "AIRFLOW__API_AUTH__JWT_SECRET": secrets.token_hex(16),
            "AIRFLOW__API__SECRET_KEY": secrets.token_hex(16),
            "AIRFLOW__CORE__FERNET_KEY": "",
            # one file builds the whole fleet of DAGs: give its parse time (default 50 s)
            "AIRFLOW__DAG_PROCESSOR__DAG_FILE_PROCESSOR_TIMEOUT": "600",
        }
        self.period = period
        self.procs: dict[str, subprocess.Popen] = {}
        self.api: Client | None = None
        with open(os.path.join(self.dags, "clock.py"), "w") as f:
            f.write(CLOCK_DAG.format(out=self.ticks, period=period))
        with open(os.path.join(self.dags, "fleet.py"), "w") as f:
            f.write(FLEET_DAG.format())

    def airflow(self, *args: str, timeout: float = 600) -> subprocess.CompletedProcess:
        return subprocess.run([os.path.join(AIRFLOW_VENV, "bin", "airflow"), *args],
                              env=self.env, cwd=self.root, capture_output=True, text=True,
                              timeout=timeout, stdin=subprocess.DEVNULL)

    def migrate(self) -> float:
        t0 = time.time()
        proc = self.airflow("db", "migrate")
        if proc.returncode:
            raise RuntimeError(f"airflow db migrate: {proc.stderr[-2000:]}")
        return time.time() - t0

    def launch(self) -> None:
        for name, argv in COMPONENTS.items():
            with open(os.path.join(self.root, f"{name}.log"), "ab") as out:
                self.procs[name] = subprocess.Popen(
                    [os.path.join(AIRFLOW_VENV, "bin", "airflow"), *argv],
                    stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
                    env=self.env, cwd=self.root, start_new_session=True)

    def pids(self) -> list[int]:
        return [p.pid for p in self.procs.values() if p.poll() is None]

    def wait_ready(self, timeout: float = 240.0) -> float:
        """Seconds until the API answers with every component healthy, and a token."""
        t0 = time.time()
        probe = Client(self.port, timeout=5.0)
        try:
            while time.time() - t0 < timeout:
                for name, p in self.procs.items():
                    if p.poll() is not None:
                        raise RuntimeError(f"airflow {name} exited {p.returncode}: "
                                           + self.log_tail(name))
                try:
                    status, raw, _ = probe.request("GET", "/api/v2/monitor/health")
                    if status == 200:
                        health = json.loads(raw)
                        if all(health.get(k, {}).get("status") == "healthy"
                               for k in ("metadatabase", "scheduler", "dag_processor",
                                         "triggerer")):
                            self.login()
                            return time.time() - t0
                except OSError:
                    pass
                time.sleep(0.5)
        finally:
            probe.close()
        raise RuntimeError(f"airflow not ready after {timeout:.0f} s: "
                           + self.log_tail("scheduler"))

    def login(self) -> None:
        """The simple auth manager's generated password -> a JWT for the REST API."""
        with open(os.path.join(self.home, "simple_auth_manager_passwords.json.generated")) as f:
            password = json.load(f)["bench"]
        c = Client(self.port)
        c.auth = {}
        token = c.json("POST", "/auth/token", {"username": "bench", "password": password},
                       expect=(200, 201))["access_token"]
        c.close()
        self.api = Client(self.port)
        self.api.auth = {"Authorization": f"Bearer {token}"}

    def client(self) -> Client:
        c = Client(self.port)
        c.auth = dict(self.api.auth)
        return c

    def read_ticks(self) -> list[tuple[float, float, str]]:
        return read_triples(self.ticks)

    def sql(self, query: str, args: tuple = ()) -> list[tuple]:
        conn = sqlite3.connect(self.db, timeout=30.0)
        try:
            return conn.execute(query, args).fetchall()
        finally:
            conn.close()

    def log_tail(self, name: str, n: int = 1500) -> str:
        try:
            with open(os.path.join(self.root, f"{name}.log"), "rb") as f:
                return f.read()[-n:].decode(errors="replace")
        except OSError:
            return ""

    def log_problems(self) -> list[str]:
        out = []
        for name in COMPONENTS:
            try:
                with open(os.path.join(self.root, f"{name}.log"), errors="replace") as f:
                    out += [f"{name}: {ln.strip()[:180]}" for ln in f
                            if "Traceback" in ln or "[error" in ln]
            except OSError:
                pass
        return out[:10]

    def stop(self) -> list[str]:
        if self.api is not None:
            self.api.close()
            self.api = None
        sids = [p.pid for p in self.procs.values()]
        killed = kill_sessions(sids, grace=15.0)
        for p in self.procs.values():
            try:
                p.wait(5)
            except subprocess.TimeoutExpired:
                pass
        return killed


# -- APScheduler 4 ----------------------------------------------------------------------------

def aps_popen(args: list[str], env: dict[str, str], root: str, venv: str = APS_VENV,
              worker: str = APS_WORKER) -> subprocess.Popen:
    """``aps_worker.py ARGS`` in the APScheduler venv (or *worker* in *venv*), in a
    session of its own."""
    return subprocess.Popen([venv_python(venv), worker, *args], env=env, cwd=root,
                            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                            stderr=open(os.path.join(root, "aps.err"), "ab"), text=True,
                            start_new_session=True)


def aps_fire(root: str, env: dict[str, str], n: int, period: float) -> list[tuple[float, float]]:
    """n runs of an IntervalTrigger(period) job: ``[(first instruction, fire time)]``."""
    os.makedirs(root, exist_ok=True)
    out = os.path.join(root, "ticks.txt")
    proc = aps_popen(["fire", os.path.join(root, "fire.db"), out, str(n), str(period)],
                     env, root)
    try:
        proc.wait(n * period * 2 + 90)
    except subprocess.TimeoutExpired:
        log("APScheduler fire: timed out")
        kill_sessions([proc.pid], 2.0)
    if proc.stdout:
        proc.stdout.close()
    try:
        with open(out) as f:
            return [(float(a), float(b)) for a, b in (line.split() for line in f)]
    except OSError:
        return []

