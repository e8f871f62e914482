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
