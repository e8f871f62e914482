"""The runtime: the processes that make runs happen.

- ``ticker.py``: finds due slots, claims each exactly once, hands it to an executor;
- ``executor.py`` / ``executor_dask.py``: where a run's supervisor starts (a warm
  local fork server, or a Dask cluster);
- ``supervisor.py``: one run from its instant to its final status, outliving the
  ticker that fired it; ``notebook.py``: a notebook job's runner;
- ``handoff.py``: a detached daemon ticks on when the last Jupyter server stops;
- ``notify.py``: webhooks and pings when runs fail, recover or go missing.

It may use ``domain``, ``store`` and ``events``; the fronts reach it through ``ops``.
"""
