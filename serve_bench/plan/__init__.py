"""The plan of a study before it runs, and an estimate of its wall time.

:func:`plan_study` resolves what ``serve-bench run`` would do, without doing any
of it: no conversion, pruning, download, server, load or run directory. It
names each checkpoint (served as it is, already pruned and reused from the
cache, or to be pruned; the bundled model converted already or not), the
server, every profile's stages expanded (targets, bounds, warm-up), the
requests each stage sends, and an estimated wall time with its parts. It
raises the errors a real run raises for the same input (bad profile, missing
model, busy explicit port…). :func:`render_plan` writes it as plain text;
:func:`estimate_line` is its one-line form. This module prints nothing.

**The estimate model** (seconds; the constants are :class:`CostModel` fields,
the calibrated set is :data:`CPU_HOST`)::

    wall = startup + checksums + conversion + pruning
           + Σ checkpoints (server_start + idle baseline + Σ stages + stop)
           + first_client + finish

    checksums   bytes hashed at the start (each source once, the bundled model twice: it is
                verified, then summed; each pruned checkpoint) / hash_gb_per_s
    pruning     (source + pruned outputs) bytes × prune_s_per_gb, for checkpoints not in the cache
    idle        energy.idle_s per checkpoint, only where energy can be measured

    one request's latency (e2el) with N closed-loop users, P prompt and O output tokens,
    kept MLP fraction f (k / intermediate size; 1 unpruned):
        E(N) = ttft_s + prefill_s_per_token·P + (O − 1)·decode_step_s·(1 − mlp_share·(1 − f))
               + (N − 1)·(user_prompt_s_per_token·P + user_output_s_per_token·O)

    closed loop, N users in lockstep (each sends one request every E(N)):
        request bound R: ceil(R/N)·E(N); time bound D: ceil(D/E)·E(N) (the requests in flight at
        the deadline finish); both: whichever is shorter; requests sent: R, or N·ceil(D/E)
        (an estimate: flagged so); + warm-up: W requests take ceil(W/N)·E(min(W, N)), a warm-up
        duration adds to D; + stage_overhead_s (spawn, start barrier, scrape, write)
    open loop at rate λ: the seeded schedule gives the n sends (exact) and their span S; the
        requests in flight L solve L = λ·E(L); S + E(L), or, when no L ≤ max_concurrency M keeps
        up (overloaded, flagged), the backlog is served at K/E(K) requests/s with K = min(M, n):
        max(S, n·E(K)/K) + E(1); + stage_overhead_s
    ramp: D + E(end users); sweep: the synchronous and max-throughput stages as closed loops,
        then its open-loop rates from their modelled throughputs (estimated, flagged so)

A time-bound stage's duration barely depends on the model (its bound sets
it), so the model matters for request-bound stages, for the drain and for how
many requests a time-bound stage sends.

**Measured instead of modelled.** Where the study's ``runs_dir`` already holds
a run of the same checkpoint and the same profile on a machine with the same
CPU model and count, a stage's duration and request count are taken from it
(latest run first) and marked "measured"; stages whose server died or which
stopped early are not used.
"""

from serve_bench.plan.cost import BUNDLED_SHAPE, CPU_HOST, CostModel
from serve_bench.plan.estimate import make_plan, plan_profile, sweep_rates
from serve_bench.plan.history import History, profile_fingerprint, read_history
from serve_bench.plan.model import (
    CheckpointPlan,
    EnergyPlan,
    EvalPlan,
    Part,
    ProfilePlan,
    ServerPlan,
    StageEstimate,
    StageInfo,
    StudyPlan,
)
from serve_bench.plan.resolve import plan_study
from serve_bench.plan.text import estimate_line, render_plan

__all__ = ["BUNDLED_SHAPE", "CPU_HOST", "CheckpointPlan", "CostModel", "EnergyPlan", "EvalPlan", "History", "Part",
           "ProfilePlan", "ServerPlan", "StageEstimate", "StageInfo", "StudyPlan", "estimate_line", "make_plan",
           "plan_profile", "plan_study", "profile_fingerprint", "read_history", "render_plan", "sweep_rates"]
