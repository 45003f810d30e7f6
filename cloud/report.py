"""Text a person reads about a deploy: the dry-run plan and the final summary table."""

from __future__ import annotations

import json
from collections import Counter

from cloud.deploy import Change
from cloud.plan import AwsCall, DeployPlan


def dry_run_text(plan: DeployPlan, smoke: AwsCall | None) -> list[str]:
    """Checks' verdicts, the container Environment, then every call (indented two spaces)."""
    lines = ["checks:"]
    lines += [f"- {verdict}" for verdict in plan.verdicts]
    lines.append("container Environment (the local server's settings, as the image reads them):")
    lines.append(f"- {json.dumps(plan.environment, sort_keys=True)}")
    lines.append("dry run: no AWS call made; a deploy where nothing exists yet would call:")
    lines += [f"  {call}" for call in [*plan.dry_run_calls(), *([smoke] if smoke else [])]]
    lines.append(
        "Existing resources with these names are reused; an endpoint on another config "
        "gets UpdateEndpoint instead of CreateEndpoint."
    )
    return lines


def summary_table(changes: list[Change]) -> list[str]:
    """One row per resource, then the count of each action."""
    if not changes:
        return []
    kind_width = max(len("what"), *(len(c.kind) for c in changes))
    name_width = max(len("name"), *(len(c.name) for c in changes))
    rows = [f"{'what':<{kind_width}}  {'name':<{name_width}}  action"]
    rows += [f"{c.kind:<{kind_width}}  {c.name:<{name_width}}  {c.action}" for c in changes]
    counts = Counter(c.action for c in changes)
    order = ("created", "updated", "deleted", "skipped")
    rows.append(", ".join(f"{counts[a]} {a}" for a in order if counts[a]))
    return rows
