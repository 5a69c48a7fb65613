"""`vllm bench serve`'s command line as serve-bench reads it: the flags that load an existing server, with
vLLM's names, defaults and meanings (vllm/benchmarks/serve.py and datasets.py, vLLM 0.11–0.13), parsed with
argparse as vLLM parses them. A vLLM flag serve-bench does not support is refused by name; an unknown flag is
refused as argparse refuses it."""

from __future__ import annotations

import argparse
import math
from dataclasses import dataclass, field
from typing import Any

from serve_bench.errors import ConfigError

DATASETS = ("random", "sharegpt", "custom", "prefix_repetition")
BACKENDS = {"openai": "completions", "vllm": "completions", "openai-chat": "chat"}
ENDPOINTS = {"completions": "/v1/completions", "chat": "/v1/chat/completions"}
METRICS = ("ttft", "tpot", "itl", "e2el")
DEFAULT_METRICS = "ttft,tpot,itl"

# vllm bench serve's flags that serve-bench bench does not take (it would measure something else, or they need a
# part of vLLM serve-bench does not drive); refused by name rather than ignored
UNSUPPORTED = (
    "--header", "--input-len", "--output-len", "--tokenizer-mode", "--use-beam-search", "--logprobs",
    "--probe-request-rate", "--num-warmups", "--profile", "--append-result", "--self-timed",
    "--request-id-prefix", "--min-p", "--frequency-penalty", "--presence-penalty", "--repetition-penalty",
    "--lora-modules", "--lora-assignment", "--ramp-up-strategy", "--ramp-up-start-rps", "--ramp-up-end-rps",
    "--ready-check-timeout-sec", "--chat-template-kwargs", "--extra-body", "--skip-tokenizer-init", "--insecure",
    "--plot-timeline", "--timeline-itl-thresholds", "--plot-dataset-stats", "--trust-remote-code",
    "--hf-subset", "--hf-split", "--hf-output-len", "--no-stream", "--disable-shuffle", "--random-batch-size",
    "--sonnet-input-len", "--sonnet-output-len", "--sonnet-prefix-len",
)


@dataclass
class BenchArgs:
    backend: str = "openai"
    base_url: str | None = None
    host: str = "127.0.0.1"
    port: int = 8000
    endpoint: str | None = None
    model: str | None = None
    served_model_name: str | None = None
    tokenizer: str | None = None
    dataset_name: str = "random"
    dataset_path: str | None = None
    num_prompts: int = 1000
    random_input_len: int = 1024
    random_output_len: int = 128
    random_range_ratio: float = 0.0
    random_prefix_len: int = 0
    sharegpt_output_len: int | None = None
    custom_output_len: int = 256
    prefix_repetition_prefix_len: int = 256
    prefix_repetition_suffix_len: int = 256
    prefix_repetition_num_prefixes: int = 10
    prefix_repetition_output_len: int = 128
    max_concurrency: int | None = None
    request_rate: float = math.inf
    burstiness: float = 1.0
    ignore_eos: bool = False
    seed: int = 0
    percentile_metrics: list[str] = field(default_factory=lambda: DEFAULT_METRICS.split(","))
    metric_percentiles: list[float] = field(default_factory=lambda: [99.0])
    goodput: list[str] = field(default_factory=list)
    save_result: bool = False
    save_detailed: bool = False
    result_dir: str | None = None
    result_filename: str | None = None
    label: str | None = None
    metadata: list[str] = field(default_factory=list)
    temperature: float | None = None
    top_p: float | None = None
    top_k: int | None = None
    disable_tqdm: bool = False

    @property
    def api(self) -> str:
        return BACKENDS[self.backend]

    @property
    def requests(self) -> int:
        """How many requests vLLM sends: ``--num-prompts``, except that prefix_repetition makes
        ``num_prompts // num_prefixes`` per prefix (and no more)."""
        if self.dataset_name == "prefix_repetition":
            n = self.prefix_repetition_num_prefixes
            return self.num_prompts // n * n
        return self.num_prompts

    @property
    def url(self) -> str:
        return (self.base_url or f"http://{self.host}:{self.port}").rstrip("/")

    def metadata_items(self) -> dict[str, str]:
        out = {}
        for item in self.metadata:
            key, sep, value = item.partition("=")
            if not sep:
                raise ConfigError(f"--metadata {item!r}: use KEY=VALUE")
            out[key.strip()] = value.strip()
        return out

    def to_dict(self) -> dict[str, Any]:
        return {k: ("inf" if isinstance(v, float) and math.isinf(v) else v) for k, v in self.__dict__.items()}


class _Refusing(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # argparse would print usage and exit 2: a ConfigError instead
        raise ConfigError(f"serve-bench bench: {message}", hint="serve-bench bench --help lists the flags it takes")


def parser() -> argparse.ArgumentParser:
    p = _Refusing(prog="serve-bench bench", description="vllm bench serve's command line, serve-bench's measurement",
                  allow_abbrev=False)
    a = p.add_argument
    a("--backend", choices=sorted(BACKENDS), default="openai", help="openai (/v1/completions) or openai-chat")
    a("--base-url", default=None, help="the server, e.g. http://127.0.0.1:8000 (else --host and --port)")
    a("--host", default="127.0.0.1")
    a("--port", type=int, default=8000)
    a("--endpoint", default=None, help="the API path; must be the backend's (/v1/completions or /v1/chat/completions)")
    a("--model", default=None, help="model name at the server (default: its first)")
    a("--served-model-name", default=None, help="the name sent in requests, when it differs from --model")
    a("--tokenizer", default=None, help="tokenizer directory (default: the model's, as the server reports it)")
    a("--dataset-name", choices=DATASETS, default="random")
    a("--dataset-path", default=None, help="sharegpt: the JSON file; custom: the JSONL file")
    a("--num-prompts", type=int, default=1000)
    a("--random-input-len", type=int, default=1024)
    a("--random-output-len", type=int, default=128)
    a("--random-range-ratio", type=float, default=0.0)
    a("--random-prefix-len", type=int, default=0)
    a("--sharegpt-output-len", type=int, default=None)
    a("--custom-output-len", type=int, default=256)
    a("--prefix-repetition-prefix-len", type=int, default=256, help="tokens of each shared prefix")
    a("--prefix-repetition-suffix-len", type=int, default=256, help="tokens after the prefix, new in every request")
    a("--prefix-repetition-num-prefixes", type=int, default=10,
      help="distinct prefixes; each carried by num_prompts // num_prefixes requests")
    a("--prefix-repetition-output-len", type=int, default=128)
    a("--max-concurrency", type=int, default=None)
    a("--request-rate", type=float, default=math.inf)
    a("--burstiness", type=float, default=1.0)
    a("--ignore-eos", action="store_true")
    a("--seed", type=int, default=0)
    a("--percentile-metrics", default=DEFAULT_METRICS)
    a("--metric-percentiles", default="99")
    a("--goodput", nargs="+", default=[])
    a("--save-result", action="store_true")
    a("--save-detailed", action="store_true", help="keep the per-request lists (ttfts, itls, input_lens …)")
    a("--result-dir", default=None)
    a("--result-filename", default=None)
    a("--label", default=None)
    a("--metadata", nargs="*", default=[])
    a("--temperature", type=float, default=None)
    a("--top-p", type=float, default=None)
    a("--top-k", type=int, default=None)
    a("--disable-tqdm", action="store_true", help="accepted; serve-bench prints one line per stage")
    return p


def parse(argv: list[str]) -> BenchArgs:
    """vLLM's flags; the ones serve-bench does not take are named, before argparse sees them."""
    given = {a.split("=", 1)[0] for a in argv if a.startswith("--")}
    refused = sorted(given & set(UNSUPPORTED))
    if refused:
        raise ConfigError(f"serve-bench bench does not support {', '.join(refused)} (flags of vllm bench serve that "
                          "serve-bench does not drive); nothing was sent",
                          hint="drop them, or run vllm bench serve for those")
    ns = parser().parse_args(argv)
    out = BenchArgs(**{k: v for k, v in vars(ns).items() if k not in ("percentile_metrics", "metric_percentiles")})
    out.percentile_metrics = [m.strip() for m in ns.percentile_metrics.split(",") if m.strip()]
    bad = [m for m in out.percentile_metrics if m not in METRICS]
    if bad:
        raise ConfigError(f"--percentile-metrics: {', '.join(bad)} not supported", hint=f"choose from {METRICS}")
    try:
        out.metric_percentiles = [float(p) for p in ns.metric_percentiles.split(",") if p.strip()]
    except ValueError:
        raise ConfigError(f"--metric-percentiles {ns.metric_percentiles!r}: comma-separated numbers") from None
    if any(not 0 < p <= 100 for p in out.metric_percentiles):
        raise ConfigError("--metric-percentiles: each must be in (0, 100]")
    _check(out)
    return out


def _check(a: BenchArgs) -> None:
    if a.num_prompts < 1:
        raise ConfigError("--num-prompts must be at least 1")
    if a.max_concurrency is not None and a.max_concurrency < 1:
        raise ConfigError("--max-concurrency must be at least 1")
    if a.request_rate <= 0:
        raise ConfigError("--request-rate must be positive (inf: every request at once)")
    if a.burstiness <= 0:
        raise ConfigError("--burstiness must be positive")
    if not 0 <= a.random_range_ratio < 1:
        raise ConfigError("--random-range-ratio must be in [0, 1)")
    if a.endpoint is not None and a.endpoint.rstrip("/") != ENDPOINTS[a.api]:
        raise ConfigError(f"--endpoint {a.endpoint} with --backend {a.backend}: serve-bench sends "
                          f"{ENDPOINTS[a.api]} for that backend", hint="drop --endpoint, or change --backend")
    if a.dataset_name == "prefix_repetition":
        for flag, v in (("--prefix-repetition-prefix-len", a.prefix_repetition_prefix_len),
                        ("--prefix-repetition-suffix-len", a.prefix_repetition_suffix_len),
                        ("--prefix-repetition-num-prefixes", a.prefix_repetition_num_prefixes),
                        ("--prefix-repetition-output-len", a.prefix_repetition_output_len)):
            if v < 1:
                raise ConfigError(f"{flag} must be at least 1")
        if a.num_prompts < a.prefix_repetition_num_prefixes:
            raise ConfigError(f"--num-prompts {a.num_prompts} is fewer than --prefix-repetition-num-prefixes "
                              f"{a.prefix_repetition_num_prefixes}: vLLM needs at least one request per prefix")
    if a.dataset_name in ("sharegpt", "custom") and not a.dataset_path:
        raise ConfigError(f"--dataset-name {a.dataset_name} needs --dataset-path FILE")
