"""The study's plan on the terminal, for ``serve-bench run --dry-run`` and at the start of every real run
(the same plan, so a user sees what is about to happen and for how long before it happens). The plan
itself is :mod:`serve_bench.plan`."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from rich.console import Console

from serve_bench.plan import estimate_line, plan_study, render_plan

if TYPE_CHECKING:
    from serve_bench.study import StudySpec

log = logging.getLogger(__name__)


def show_plan(spec: StudySpec, console: Console, dry_run: bool) -> tuple[bool, float | None]:
    """Dry run: print the plan (errors propagate: the same messages and exit codes as a run) and return
    (True, …): the caller stops there. Real run: print the plan and its one-line summary, never fail (a run
    reports its own errors, with its run directory), and return (False, the estimated wall time in s, or
    None)."""
    if dry_run:
        console.print(render_plan(plan_study(spec)), markup=False, highlight=False, soft_wrap=True)
        return True, None
    try:
        plan = plan_study(spec, verify=False)
    except Exception as err:  # noqa: BLE001 - the plan is a courtesy; the run itself says what is wrong
        log.debug("no plan: %s", err)
        return False, None
    console.print(render_plan(plan, run_dir_hint=False), markup=False, highlight=False, soft_wrap=True,
                  style="dim")
    console.print(estimate_line(plan), markup=False, highlight=False, soft_wrap=True)
    return False, plan.total_s
