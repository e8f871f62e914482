"""``python -m hermes_cron_ext ...`` is the ``hermes-cron`` CLI (no console script needed)."""

import sys

from hermes_cron_ext.frontends.cli import main

sys.exit(main())
