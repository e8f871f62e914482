"""hermes-cron-ext: the durable cron scheduler for Jupyter."""

from __future__ import annotations

__version__ = "0.1.0"
