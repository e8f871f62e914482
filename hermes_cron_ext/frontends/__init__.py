"""The fronts a person uses, all through ``ops``.

- ``cli.py``: ``hermes-cron``; ``magics.py``: ``%cron`` and ``%%cron``; both read their
  commands from ``commands.py`` (one grammar) and print through ``render.py`` (every
  text format);
- ``widgets/``: the notebook's widgets (job cards, run history, live output,
  dashboard, forms, pipeline graph, backfill progress), one module each;
- ``terminal.py``: run output (ANSI colours, ``\\r`` bars) as a terminal shows it.

The JupyterLab side panel is the other front, in ``labextension/``.
"""
