"""Model helpers every API answer goes through."""

from __future__ import annotations

import random
from datetime import UTC, datetime

from hermes_cron_ext.domain.models import iso, parse_iso


def test_iso_matches_datetime_to_the_millisecond():
    rng = random.Random(7)
    instants = [0.0, 1.9999999, 1_800_000_000.9995, 1_800_000_000.0009999,
                1_800_000_000.9999996, 951_782_400.0]  # ... and 2000-02-29
    instants += [rng.uniform(0, 4e9) for _ in range(20_000)]
    for ts in instants:
        want = datetime.fromtimestamp(ts, tz=UTC).isoformat(
            timespec="milliseconds").replace("+00:00", "Z")
        assert iso(ts) == want, ts
    assert iso(None) is None
    assert parse_iso(iso(1_800_000_000.25)) == 1_800_000_000.25
