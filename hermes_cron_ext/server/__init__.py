"""The jupyter-server extension: the REST + SSE API under ``{base_url}api/cron/``.

- ``app.py``: the extension (settings, start and stop, the in-server ticker);
- ``handlers.py``: thin, auth-checked handlers that delegate to ``service.py``,
  the async face of ``ops`` that keeps every store call off the event loop;
- ``streams.py``: live output, read once per run and shared by every viewer;
- ``openapi.py``: the OpenAPI document (and the panel's types), generated from the
  options schema.
"""
