"""The runtime: the processes that make runs happen.

- ``ticker.py``: finds due slots, claims each exactly once, hands it to an executor;
- ``executor.py`` / ``executor_dask.py``: where a run goes (a warm local fork server,
  or a Dask cluster);
- ``agent.py``: a host agent, one warm process watching many command and Python runs
  from their instant to their final status, outliving the ticker that fired them;
- ``supervisor.py``: the same for one run in a process of its own (notebooks, runs
  that wait for a turn, one-off runs); ``notebook.py``: a notebook job's runner;
- ``handoff.py``: a detached daemon ticks on when the last Jupyter server stops;
- ``notify.py``: webhooks and pings when runs fail, recover or go missing.

It may use ``domain``, ``store`` and ``events``; the fronts reach it through ``ops``.
"""
