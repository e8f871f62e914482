"""The notification outbox as text (``hermes-cron notifications``) and HTML
(``%cron notifications``): one row per delivery, newest first, with its attempts and
the last error, so a message that did not arrive is never a mystery."""

from __future__ import annotations

import html
import time

from hermes_cron_ext.frontends.render import local_time, relative_time, text_table

HEADERS = ["WHEN", "EVENT", "JOB", "RUN", "TO", "STATUS", "TRIES", "LAST ERROR / NEXT TRY"]


def _status(n: dict, now: float) -> str:
    status = n["status"].upper()
    if n["status"] in ("pending", "sending") and n.get("next_attempt_at") and n["attempts"]:
        status += " (retrying)"
    return status


def _last(n: dict, now: float) -> str:
    error = n.get("last_error") or ""
    if n["status"] == "pending" and n.get("next_attempt_at") and n["attempts"]:
        error = f"{error}; next try {relative_time(n['next_attempt_at'], now)}"
    return error.strip("; ")


def _rows(items: list[dict], now: float) -> list[list[str]]:
    return [[local_time(n["created_at"]), n["event"], n.get("job") or "-",
             n.get("run_id") or "-", n["destination"], _status(n, now), str(n["attempts"]),
             _last(n, now)] for n in items]


def _counts(answer: dict) -> str:
    counts = answer.get("counts")
    if not counts:
        return ""
    return "outbox: " + ", ".join(f"{counts.get(k, 0)} {k}" for k in
                                  ("pending", "sent", "failed"))


def notifications_text(answer: dict, now: float | None = None) -> str:
    now = time.time() if now is None else now
    items = answer["notifications"]
    if not items:
        return ("no notifications yet (a job's destinations: --notify URL; "
                "see docs/notifications.md)")
    lines = [text_table(HEADERS, _rows(items, now))]
    if answer.get("counts"):
        lines.append(_counts(answer))
    return "\n".join(lines)


def notifications_html(answer: dict, now: float | None = None) -> str:
    now = time.time() if now is None else now
    items = answer["notifications"]
    if not items:
        return "<p>No notifications yet.</p>"
    head = "".join(f"<th style='text-align:left'>{html.escape(h.title())}</th>"
                   for h in HEADERS)
    body = []
    for n, row in zip(items, _rows(items, now), strict=True):
        color = {"sent": "var(--jp-success-color1, green)",
                 "failed": "var(--jp-error-color1, red)"}.get(n["status"], "inherit")
        cells = "".join(f"<td>{html.escape(c)}</td>" for c in row)
        body.append(f"<tr data-status='{html.escape(n['status'])}' "
                    f"style='color:{color}'>{cells}</tr>")
    counts = _counts(answer)
    return (f"<table class='hermes-cron-notifications'><thead><tr>{head}</tr></thead>"
            f"<tbody>{''.join(body)}</tbody></table>"
            + (f"<p>{html.escape(counts)}</p>" if counts else ""))
