"""Writes the shipped JSON Schema of a definitions file, ``domain/jobs.schema.json``,
from the options schema (``domain/definitions.py:file_schema``).

``python -m hermes_cron_ext.ops.definitions --write`` writes it; ``--check`` exits 1 when
it is stale (tests/domain/test_definitions.py runs it, so a new option cannot be left
out of the file editors validate against)."""

from __future__ import annotations

import sys
from pathlib import Path

from hermes_cron_ext.domain import definitions

SCHEMA_PATH = Path(definitions.__file__).with_name("jobs.schema.json")


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    text = definitions.schema_text()
    if "--write" in args:
        SCHEMA_PATH.write_text(text)
        return 0
    if "--check" in args:
        if not SCHEMA_PATH.exists() or SCHEMA_PATH.read_text() != text:
            print(f"{SCHEMA_PATH} is stale: run python -m hermes_cron_ext.ops.definitions "
                  "--write", file=sys.stderr)
            return 1
        return 0
    sys.stdout.write(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
