"""The options whose value may be left out, and the test path that may follow them.

``--orbstack-keep`` and ``--orbstack-prune`` take an optional value. argparse gives an option
with an optional value whatever word follows it, so ``pytest --orbstack-keep tests/test_x.py``
would keep ``tests/test_x.py`` as the policy and run every test path. Before pytest parses the
command line (addopts and ``PYTEST_ADDOPTS`` included), :func:`split_bare_flags` writes such a
flag in its ``=`` form with its default, so the word after it stays a test path; a flag
followed by one of its own values (``--orbstack-keep failed``) is left as it is.
"""

from __future__ import annotations

KEEP_POLICIES = ("never", "always", "failed")
PRUNE_SCOPES = ("project", "all")
OPTIONAL_VALUES = {"--orbstack-keep": KEEP_POLICIES, "--orbstack-prune": PRUNE_SCOPES}
BARE_VALUE = {"--orbstack-keep": "always", "--orbstack-prune": "project"}


def split_bare_flags(args: list[str]) -> bool:
    """Rewrite ``args`` in place: each bare ``--orbstack-keep``/``--orbstack-prune`` not followed
    by one of its values becomes ``--orbstack-keep=always``/``--orbstack-prune=project``
    (nothing after ``--`` is looked at). Returns whether anything changed."""
    changed = False
    for i, arg in enumerate(args):
        if arg == "--":
            break
        values = OPTIONAL_VALUES.get(arg)
        if values is not None and (i + 1 == len(args) or args[i + 1] not in values):
            args[i] = f"{arg}={BARE_VALUE[arg]}"
            changed = True
    return changed
