"""Who may do what with a job, on a store that several users share (a JupyterHub).

A job has an *owner*: the hub user who created it ('' for a store that one user
keeps, where every caller is that user). A :class:`Viewer` is whoever asks, as the
hub told the service; ``None`` stands for the store's own user (the CLI on the
store file, a single-user Jupyter server) and may do everything, as before hubs.

- the owner, and a hub admin, may do everything with the job;
- a member of a group the job is shared with for ``read`` sees the job, its runs,
  their output and artifacts; shared for ``execute`` may also run it and cancel
  its runs (not change, pause, delete or backfill it);
- anyone else is told the job does not exist (404): not even its name leaks.

A job may run ``after`` another user's job it may read: its runs then learn the
upstream run's status, exit code and artifact path. Such a link records what let its
owner read the upstream (:func:`link_via`: the groups of theirs it was shared with, or
that an admin made it), and holds only while that still does (:func:`link_holds`):
when the upstream is no longer shared with one of those groups, its runs no longer
trigger the job, which is blocked with the reason (:func:`link_refusal`).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from hermes_cron_ext.errors import InvalidInput

#: what a group share grants, weakest first
SHARE_LEVELS = ("read", "execute")
#: a hub group's name as a share names it
GROUP_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._@+-]{0,99}$"
#: the actions on a job, from the weakest; a share grants a prefix of them
ACTIONS = ("read", "run", "change")
_GRANTS = {"read": {"read"}, "execute": {"read", "run"}}
#: in a link's ``via``: made by an admin or the store's own user, who read every job (no
#: group name starts with "@")
BY_ADMIN = "@admin"


@dataclass(frozen=True)
class Viewer:
    """A hub user as the hub describes them: name, groups, and whether they hold the
    service's admin scope."""

    name: str
    groups: frozenset[str] = field(default_factory=frozenset)
    admin: bool = False

    def to_json(self) -> dict[str, object]:
        return {"name": self.name, "groups": sorted(self.groups), "admin": self.admin}


def allowed(viewer: Viewer | None, owner: str, shares: dict[str, str] | None,
            action: str) -> bool:
    """Whether *viewer* may *action* (one of :data:`ACTIONS`) a job of *owner* shared
    with *shares* (``{group: level}``)."""
    if action not in ACTIONS:
        raise ValueError(action)
    if viewer is None or viewer.admin or viewer.name == owner:
        return True
    granted: set[str] = set()
    for group, level in (shares or {}).items():
        if group in viewer.groups:
            granted |= _GRANTS.get(level, set())
    return action in granted


def validate_shares(value: object) -> dict[str, str]:
    """``shares`` as given: ``{group: "read" | "execute"}`` (None: none)."""
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise InvalidInput("shares must be an object of group: read or execute",
                           field="shares")
    for group, level in value.items():
        if not isinstance(group, str) or not re.match(GROUP_PATTERN, group):
            raise InvalidInput(f"shares: {group!r} is not a group name (letters, digits and "
                               f"._@+- up to 100)", field="shares")
        if level not in SHARE_LEVELS:
            raise InvalidInput(f"shares: {group} must be read or execute, not {level!r}",
                               field="shares")
    return dict(sorted(value.items()))


def link_via(viewer: Viewer | None, owner: str, upstream_owner: str,
             upstream_shares: dict[str, str] | None) -> list[str] | None:
    """What lets the job of *owner* run after a job of *upstream_owner* that *viewer*
    links it to (they may read it): None when nothing needs to (the same owner's job,
    or the store's own user's job, which runs as the service); else the groups of the
    viewer's the upstream is shared with (only the owner's own groups count), and
    :data:`BY_ADMIN` when an admin or the store's own user makes the link."""
    if owner == upstream_owner or owner == "":
        return None
    via: list[str] = []
    if viewer is not None and viewer.name == owner:
        via = sorted(g for g in (upstream_shares or {}) if g in viewer.groups)
    if viewer is None or viewer.admin:
        via.append(BY_ADMIN)
    return via


def link_holds(owner: str, upstream_owner: str, upstream_shares: dict[str, str] | None,
               via: list[str] | None) -> bool:
    """Whether a run of *upstream_owner*'s job (shared with *upstream_shares* now) may
    still trigger the job of *owner* whose link recorded *via* (:func:`link_via`; None
    for a link saved before links were recorded: it does not hold across owners)."""
    if owner == upstream_owner or owner == "":
        return True
    if not isinstance(via, list):
        return False
    return BY_ADMIN in via or any(g in (upstream_shares or {}) for g in via)


def link_refusal(upstream_owner: str, upstream_name: str, via: list[str] | None) -> str:
    """Why a job is blocked: the link of its ``after`` to *upstream_owner*'s job, which
    recorded *via*, no longer holds."""
    job = f"after: {upstream_owner}'s job {upstream_name!r}"
    if not isinstance(via, list):
        return (f"{job} was linked before such links recorded what shares it with you: "
                f"save this job's after again, then resume it")
    return (f"{job} is no longer shared with you, so its runs no longer trigger this job "
            f"(resume it once it is shared with you again, or take it out of after)")
