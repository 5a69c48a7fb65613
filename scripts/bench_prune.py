#!/usr/bin/env python
"""Benchmark serve-bench's streaming pruner against load-prune-save in transformers.

    .venv/bin/python scripts/bench_prune.py [--workdir DIR] [--keep] [--runs N] [--cold]

(--runs N: runs per approach, default 2; --cold: evict the source from the page
cache before every run; --keep: keep the generated source for the next call.)

1. Generates (once, cached in the workdir) a Llama-3.2-1B-shaped checkpoint with
   random bf16 weights, about 2.5 GB in three ~1 GB shards plus an index.
2. Prunes it at 40% (--divisor 0, so k = 4916 of 8192) with both approaches,
   each in a fresh subprocess, alternating a, b, a, b, …:
     a. streaming: the ``serve-bench prune`` CLI;
     b. plain: ``AutoModelForCausalLM.from_pretrained``, score every layer with
        ``serve_bench.prune.criteria.ppm``, slice gate/up rows and down columns
        in memory, ``save_pretrained``.
3. Checks after every pair that both outputs hold identical tensors (and, for
   one layer, that they equal the source sliced independently); exits 1 if not.
4. Prints a Markdown table and writes JSON next to the workdir (``DIR.json``).

Measured per run: wall time from spawn to exit (interpreter start and imports
included), and peak RSS of the subprocess from ``wait4``'s ``ru_maxrss``
(the kernel's high-water mark of resident pages: anonymous memory plus any
file pages the process has mapped and touched, e.g. an mmap'd safetensors
file; the page cache behind plain ``read()`` calls is not counted). A thread
polls ``/proc/PID/status`` of the process tree every 20 ms for a cross-check
and to split the peak into anonymous and file-backed pages.

The parent process imports neither torch nor transformers and stays small: on
Linux a child's ru_maxrss starts from the parent's high-water mark at exec,
so a fat parent would inflate every figure. Its own peak is reported.

By default the source's pages are read into the page cache before the runs
(warm cache, both approaches alike). ``--cold`` instead evicts the source
files from the page cache (posix_fadvise DONTNEED on those files only) before
every run. Outputs are synced to disk between runs, outside the timings.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import resource
import shutil
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path

import psutil

REPO = Path(__file__).resolve().parent.parent
PY = sys.executable
SERVE_BENCH = str(Path(PY).parent / "serve-bench")

# Llama-3.2-1B's shape.
CONFIG = {
    "architectures": ["LlamaForCausalLM"],
    "model_type": "llama",
    "attention_bias": False,
    "attention_dropout": 0.0,
    "bos_token_id": 128000,
    "eos_token_id": 128001,
    "head_dim": 64,
    "hidden_act": "silu",
    "hidden_size": 2048,
    "initializer_range": 0.02,
    "intermediate_size": 8192,
    "max_position_embeddings": 131072,
    "mlp_bias": False,
    "num_attention_heads": 32,
    "num_hidden_layers": 16,
    "num_key_value_heads": 8,
    "pretraining_tp": 1,
    "rms_norm_eps": 1e-05,
    "rope_scaling": {
        "factor": 32.0,
        "high_freq_factor": 4.0,
        "low_freq_factor": 1.0,
        "original_max_position_embeddings": 8192,
        "rope_type": "llama3",
    },
    "rope_theta": 500000.0,
    "tie_word_embeddings": True,
    "torch_dtype": "bfloat16",
    "dtype": "bfloat16",
    "use_cache": True,
    "vocab_size": 128256,
}
PRUNE = 0.4
SEED = 1234
MAX_SHARD_BYTES = 1_000_000_000
MARKER = ".bench-source.json"  # hidden: the pruner does not copy dot files into its outputs
SOURCE_NAME = "llama-3.2-1b-shape"
GiB = 1024 ** 3


# ---------------------------------------------------------------- the checkpoint

def tensor_plan() -> list[tuple[str, tuple[int, ...]]]:
    """(name, shape) in the order transformers' LlamaForCausalLM names them; no lm_head (tied)."""
    c = CONFIG
    h, i, hd = c["hidden_size"], c["intermediate_size"], c["head_dim"]
    q, kv = c["num_attention_heads"] * hd, c["num_key_value_heads"] * hd
    out = [("model.embed_tokens.weight", (c["vocab_size"], h))]
    for n in range(c["num_hidden_layers"]):
        p = f"model.layers.{n}."
        out += [
            (p + "input_layernorm.weight", (h,)),
            (p + "mlp.down_proj.weight", (h, i)),
            (p + "mlp.gate_proj.weight", (i, h)),
            (p + "mlp.up_proj.weight", (i, h)),
            (p + "post_attention_layernorm.weight", (h,)),
            (p + "self_attn.k_proj.weight", (kv, h)),
            (p + "self_attn.o_proj.weight", (h, q)),
            (p + "self_attn.q_proj.weight", (q, h)),
            (p + "self_attn.v_proj.weight", (kv, h)),
        ]
    out.append(("model.norm.weight", (h,)))
    return out


def shard_plan() -> list[list[tuple[str, tuple[int, ...]]]]:
    shards: list[list[tuple[str, tuple[int, ...]]]] = [[]]
    size = 0
    for name, shape in tensor_plan():
        n = 2 * _numel(shape)
        if shards[-1] and size + n > MAX_SHARD_BYTES:
            shards.append([])
            size = 0
        shards[-1].append((name, shape))
        size += n
    return shards


def _numel(shape: tuple[int, ...]) -> int:
    n = 1
    for d in shape:
        n *= d
    return n


def fingerprint() -> dict:
    return {"config": CONFIG, "seed": SEED, "shards": [[[n, list(s)] for n, s in sh] for sh in shard_plan()]}


def source_is_cached(src: Path) -> bool:
    marker = src / MARKER
    if not marker.is_file():
        return False
    try:
        saved = json.loads(marker.read_text())
    except json.JSONDecodeError:
        return False
    if saved.get("fingerprint") != fingerprint():
        return False
    return all((src / f).is_file() and (src / f).stat().st_size == size for f, size in saved["files"].items())


def generate(src: Path) -> None:
    """Child process: write the random checkpoint one tensor at a time (peak ≈ the embedding, 0.5 GB)."""
    import torch

    from serve_bench.models.safetensors_stream import StreamWriter

    shutil.rmtree(src, ignore_errors=True)
    src.mkdir(parents=True)
    shards = shard_plan()
    weight_map: dict[str, str] = {}
    total = 0
    index = 0
    for s, tensors in enumerate(shards, 1):
        fname = f"model-{s:05d}-of-{len(shards):05d}.safetensors"
        with StreamWriter(src / fname, [(n, "BF16", shape) for n, shape in tensors], {"format": "pt"}) as w:
            for name, shape in tensors:
                if name.endswith("norm.weight"):
                    # RMSNorm gains near 1, as in a trained model.
                    t = 1 + 0.05 * torch.randn(shape, generator=torch.Generator().manual_seed(SEED + index))
                    t = t.to(torch.bfloat16)
                else:
                    t = torch.empty(shape, dtype=torch.bfloat16).normal_(
                        0.0, 0.02, generator=torch.Generator().manual_seed(SEED + index))
                w.write(name, t)
                weight_map[name] = fname
                total += t.numel() * 2
                index += 1
                del t
    (src / "config.json").write_text(json.dumps(CONFIG, indent=2) + "\n")
    (src / "model.safetensors.index.json").write_text(
        json.dumps({"metadata": {"total_size": total}, "weight_map": weight_map}, indent=2) + "\n")
    files = {p.name: p.stat().st_size for p in sorted(src.iterdir()) if p.name != MARKER}
    (src / MARKER).write_text(json.dumps({"fingerprint": fingerprint(), "files": files}) + "\n")


# ---------------------------------------------------------------- approach b

def plain(src: Path, out: Path, k: int) -> None:
    """Child process: the plain approach, load everything, prune in memory, save."""
    t0 = time.perf_counter()
    import torch
    from torch import nn
    from transformers import AutoModelForCausalLM

    from serve_bench.prune.criteria import keep_indices, ppm

    t_import = time.perf_counter()
    model = AutoModelForCausalLM.from_pretrained(src, dtype=torch.bfloat16)
    t_load = time.perf_counter()
    with torch.no_grad():
        for layer in model.model.layers:
            mlp = layer.mlp
            keep = keep_indices(ppm(mlp.gate_proj.weight, mlp.up_proj.weight), k)
            for lin, dim in ((mlp.gate_proj, 0), (mlp.up_proj, 0), (mlp.down_proj, 1)):
                lin.weight = nn.Parameter(lin.weight.index_select(dim, keep), requires_grad=False)
                if dim == 0:
                    lin.out_features = k
                else:
                    lin.in_features = k
            if hasattr(mlp, "intermediate_size"):
                mlp.intermediate_size = k
    model.config.intermediate_size = k
    t_prune = time.perf_counter()
    model.save_pretrained(out)
    t_save = time.perf_counter()
    print("PHASES " + json.dumps({"import_s": t_import - t0, "load_s": t_load - t_import,
                                  "prune_s": t_prune - t_load, "save_s": t_save - t_prune}))


# ---------------------------------------------------------------- verification

def _tensor_files(ckpt: Path) -> dict[str, Path]:
    index = ckpt / "model.safetensors.index.json"
    if index.is_file():
        return {n: ckpt / f for n, f in json.loads(index.read_text())["weight_map"].items()}
    from safetensors import safe_open

    single = ckpt / "model.safetensors"
    with safe_open(single, framework="pt") as f:
        return {n: single for n in f.keys()}


def verify(a: Path, b: Path, src: Path, k: int) -> None:
    """Child process: the two outputs must hold the same tensors; exits 1 with the differences if not."""
    import torch
    from safetensors import safe_open

    from serve_bench.prune.criteria import keep_indices, ppm

    problems: list[str] = []
    ca, cb = (json.loads((d / "config.json").read_text()) for d in (a, b))
    for name, c in (("streaming", ca), ("plain", cb)):
        if c.get("intermediate_size") != k:
            problems.append(f"{name} config.json intermediate_size is {c.get('intermediate_size')}, want {k}")
    fa, fb = _tensor_files(a), _tensor_files(b)
    if set(fa) != set(fb):
        problems.append(f"tensor names differ: only streaming {sorted(set(fa) - set(fb))[:5]}, "
                        f"only plain {sorted(set(fb) - set(fa))[:5]}")
    handles: dict[Path, object] = {}

    def get(files: dict[str, Path], name: str) -> torch.Tensor:
        p = files[name]
        if p not in handles:
            handles[p] = safe_open(p, framework="pt")
        return handles[p].get_tensor(name)  # type: ignore[attr-defined]

    compared = 0
    for name in sorted(set(fa) & set(fb)):
        ta, tb = get(fa, name), get(fb, name)
        if ta.dtype != tb.dtype or ta.shape != tb.shape or not torch.equal(ta, tb):
            problems.append(f"{name}: streaming {ta.dtype} {tuple(ta.shape)} != plain {tb.dtype} {tuple(tb.shape)}"
                            + ("" if ta.shape != tb.shape else " (values differ)"))
        compared += 1
        del ta, tb
    # Independent of both pruners: layer 0 and the last layer sliced here from the source.
    fs = _tensor_files(src)
    last = CONFIG["num_hidden_layers"] - 1
    for layer in (0, last):
        p = f"model.layers.{layer}.mlp."
        gate, up, down = (get(fs, p + r + "_proj.weight") for r in ("gate", "up", "down"))
        keep = keep_indices(ppm(gate, up), k)
        want = {"gate": gate[keep], "up": up[keep], "down": down[:, keep]}
        for role, w in want.items():
            if not torch.equal(get(fa, p + role + "_proj.weight"), w):
                problems.append(f"layer {layer} {role}_proj differs from the source sliced by ppm")
    if problems:
        print("VERIFY FAILED:\n  " + "\n  ".join(problems), file=sys.stderr)
        sys.exit(1)
    print(f"verified: {compared} tensors identical, intermediate_size {k}, layers 0 and {last} match the source")


# ---------------------------------------------------------------- measuring

def _proc_status(pid: int) -> dict[str, int]:
    """VmRSS, RssAnon, RssFile, RssShmem in KiB from /proc/PID/status (empty once the process is gone)."""
    out = {}
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                key, _, rest = line.partition(":")
                if key in ("VmRSS", "RssAnon", "RssFile", "RssShmem"):
                    out[key] = int(rest.split()[0])
    except (FileNotFoundError, ProcessLookupError, ValueError):
        pass
    return out


class Poller(threading.Thread):
    """Peak RSS of a process and its descendants, sampled every ``interval`` seconds."""

    def __init__(self, pid: int, interval: float = 0.02) -> None:
        super().__init__(daemon=True)
        self.pid, self.interval = pid, interval
        self.stop = threading.Event()
        self.peak = {"VmRSS": 0, "RssAnon": 0, "RssFile": 0, "RssShmem": 0}
        self.peak_at_rss = dict(self.peak)  # the breakdown at the moment of peak VmRSS
        self.samples = 0

    def run(self) -> None:
        try:
            root = psutil.Process(self.pid)
        except psutil.NoSuchProcess:
            return
        pids, listed = [self.pid], 0.0
        while not self.stop.is_set():
            now = time.monotonic()
            if now - listed > 0.5:  # walking /proc for descendants is the costly part: not every tick
                try:
                    pids = [self.pid] + [c.pid for c in root.children(recursive=True)]
                except psutil.NoSuchProcess:
                    pids = [self.pid]
                listed = now
            total = {key: 0 for key in self.peak}
            for pid in pids:
                for key, v in _proc_status(pid).items():
                    total[key] += v
            if total["VmRSS"]:
                self.samples += 1
                for key in self.peak:
                    self.peak[key] = max(self.peak[key], total[key])
                if total["VmRSS"] >= self.peak_at_rss["VmRSS"]:
                    self.peak_at_rss = total
            self.stop.wait(self.interval)


def measure(cmd: list[str], log: Path, env: dict[str, str]) -> dict:
    with open(log, "wb") as logf:
        t0 = time.perf_counter()
        proc = subprocess.Popen(cmd, stdout=logf, stderr=subprocess.STDOUT, env=env, cwd=REPO)
        poller = Poller(proc.pid)
        poller.start()
        _, status, ru = os.wait4(proc.pid, 0)
        wall = time.perf_counter() - t0
        poller.stop.set()
        poller.join()
    proc.returncode = os.waitstatus_to_exitcode(status)
    text = log.read_text(errors="replace")
    phases = None
    for line in text.splitlines():
        if line.startswith("PHASES "):
            phases = json.loads(line[len("PHASES "):])
    return {
        "cmd": cmd,
        "returncode": proc.returncode,
        "wall_s": wall,
        "user_s": ru.ru_utime,
        "sys_s": ru.ru_stime,
        "ru_maxrss_bytes": ru.ru_maxrss * 1024,
        "major_faults": ru.ru_majflt,
        "minor_faults": ru.ru_minflt,
        "fs_in_blocks": ru.ru_inblock,
        "fs_out_blocks": ru.ru_oublock,
        "poll_peak_bytes": {k: v * 1024 for k, v in poller.peak.items()},
        "poll_at_peak_rss_bytes": {k: v * 1024 for k, v in poller.peak_at_rss.items()},
        "poll_samples": poller.samples,
        "phases": phases,
        "log_tail": text[-2000:],
    }


def read_through(paths: list[Path]) -> None:
    """Plain reads, so the files sit in the page cache without being in anyone's RSS."""
    buf = bytearray(16 << 20)
    for p in paths:
        with open(p, "rb", buffering=0) as f:
            while f.readinto(buf):
                pass


def evict(paths: list[Path]) -> None:
    """Drop these files' pages from the page cache (only these; other users' caches are untouched)."""
    for p in paths:
        fd = os.open(p, os.O_RDONLY)
        try:
            os.fdatasync(fd)
            os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
        finally:
            os.close(fd)


def cached_fraction(paths: list[Path]) -> float | None:
    """Share of these files' pages in the page cache (mincore on an untouched private mapping), or None."""
    try:
        import ctypes
        import mmap

        libc = ctypes.CDLL(None, use_errno=True)
        page = mmap.PAGESIZE
        cached = total = 0
        for p in paths:
            size = p.stat().st_size
            n = (size + page - 1) // page
            vec = (ctypes.c_ubyte * n)()
            with open(p, "rb") as f, mmap.mmap(f.fileno(), size, access=mmap.ACCESS_COPY) as m:
                anchor = ctypes.c_char.from_buffer(m)  # its address; no page is touched
                rc = libc.mincore(ctypes.c_void_p(ctypes.addressof(anchor)), ctypes.c_size_t(size), vec)
                del anchor
            if rc != 0:
                return None
            cached += sum(b & 1 for b in bytes(vec))
            total += n
        return cached / total if total else None
    except Exception:
        return None


# ---------------------------------------------------------------- main

def machine() -> dict:
    model = ""
    try:
        for line in subprocess.run(["lscpu"], capture_output=True, text=True, check=False).stdout.splitlines():
            if line.startswith("Model name:"):
                model = line.split(":", 1)[1].strip()
    except OSError:
        pass
    versions = subprocess.run(
        [PY, "-c", "import torch, transformers, safetensors; "
                   "print(torch.__version__, transformers.__version__, safetensors.__version__)"],
        capture_output=True, text=True, check=True).stdout.split()
    return {
        "cpu_model": model or platform.processor(),
        "cpus": os.cpu_count(),
        "mem_total_gib": psutil.virtual_memory().total / GiB,
        "gpu": None,
        "kernel": platform.release(),
        "python": platform.python_version(),
        "torch": versions[0], "transformers": versions[1], "safetensors": versions[2],
        "load_avg_before": os.getloadavg(),
    }


def summarise(runs: list[dict], key: str) -> dict:
    sel = [r for r in runs if r["approach"] == key]
    walls = [r["wall_s"] for r in sel]
    rss = [r["ru_maxrss_bytes"] for r in sel]
    cpu = [r["user_s"] + r["sys_s"] for r in sel]
    anon = [r["poll_peak_bytes"]["RssAnon"] for r in sel]
    return {"runs": len(sel), "wall_s": walls, "wall_s_median": statistics.median(walls),
            "cpu_s": cpu, "cpu_s_median": statistics.median(cpu),
            "anon_peak_bytes": anon, "anon_peak_bytes_median": statistics.median(anon),
            "ru_maxrss_bytes": rss, "ru_maxrss_bytes_median": statistics.median(rss),
            "ru_maxrss_bytes_max": max(rss)}


def markdown(result: dict) -> str:
    s, p = result["summary"]["streaming"], result["summary"]["plain"]
    lines = [
        "| approach | run | time (s) | CPU user+sys (s) | peak RSS (GiB), ru_maxrss | "
        "polled peak: total / anon / file-backed (GiB) | load avg (1 min) after |",
        "|---|---|---:|---:|---:|---:|---:|",
    ]
    for r in result["runs"]:
        pk = r["poll_at_peak_rss_bytes"]
        lines.append(f"| {r['approach']} | {r['run']} | {r['wall_s']:.1f} | {r['user_s'] + r['sys_s']:.1f} | "
                     f"{r['ru_maxrss_bytes'] / GiB:.2f} | "
                     f"{pk['VmRSS'] / GiB:.2f} / {pk['RssAnon'] / GiB:.2f} / {pk['RssFile'] / GiB:.2f} | "
                     f"{r['load_avg'][0]:.1f} |")
    lines += [
        "",
        "| approach | median time (s) | median CPU (s) | median peak RSS (GiB) | median peak anon RSS (GiB) |",
        "|---|---:|---:|---:|---:|",
        f"| serve-bench streaming | {s['wall_s_median']:.1f} | {s['cpu_s_median']:.1f} | "
        f"{s['ru_maxrss_bytes_median'] / GiB:.2f} | {s['anon_peak_bytes_median'] / GiB:.2f} |",
        f"| plain load-prune-save | {p['wall_s_median']:.1f} | {p['cpu_s_median']:.1f} | "
        f"{p['ru_maxrss_bytes_median'] / GiB:.2f} | {p['anon_peak_bytes_median'] / GiB:.2f} |",
        f"| ratio plain / streaming | {p['wall_s_median'] / s['wall_s_median']:.2f}x | "
        f"{p['cpu_s_median'] / s['cpu_s_median']:.2f}x | "
        f"{p['ru_maxrss_bytes_median'] / s['ru_maxrss_bytes_median']:.2f}x | "
        f"{p['anon_peak_bytes_median'] / s['anon_peak_bytes_median']:.2f}x |",
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--workdir", type=Path, default=Path("/tmp/serve-bench-bench"))
    ap.add_argument("--keep", action="store_true", help="keep the generated source checkpoint for the next run")
    ap.add_argument("--runs", type=int, default=2, help="runs per approach, alternating (default 2: a, b, a, b)")
    ap.add_argument("--cold", action="store_true",
                    help="evict the source files from the page cache before every run (default: warm cache)")
    args = ap.parse_args(argv)
    if args.runs < 1:
        ap.error("--runs must be at least 1")

    work = args.workdir.expanduser().resolve()
    work.mkdir(parents=True, exist_ok=True)
    src = work / SOURCE_NAME
    json_path = work.with_name(work.name + ".json")
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONUNBUFFERED": "1", "TRANSFORMERS_VERBOSITY": "error"}
    env.pop("CUDA_VISIBLE_DEVICES", None)

    # serve_bench.prune imports torch: ask a child, keeping this process small.
    k = int(subprocess.run(
        [PY, "-c", "from serve_bench.prune.plan import Target, plan; "
                   f"print(plan(Target(prune={PRUNE}), {CONFIG['intermediate_size']}, {CONFIG['hidden_size']}, 0).k)"],
        capture_output=True, text=True, check=True, cwd=REPO).stdout)

    result: dict = {
        "benchmark": "prune: streaming rewrite vs load-prune-save",
        "date_utc": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "command": " ".join([".venv/bin/python", "scripts/bench_prune.py",
                             *(argv if argv is not None else sys.argv[1:])]),
        "machine": machine(),
        "model": {"shape": "Llama-3.2-1B", "config": CONFIG, "prune": PRUNE, "divisor": 0, "k": k},
        "cache": "cold (source evicted before every run)" if args.cold else "warm (source read into page cache first)",
    }
    ok = False
    try:
        if source_is_cached(src):
            print(f"source: cached {src}")
            result["generate"] = None
        else:
            print(f"source: generating {src} …", flush=True)
            gen = measure([PY, __file__, "_generate", str(src)], work / "generate.log", env)
            if gen["returncode"] != 0:
                print(gen["log_tail"], file=sys.stderr)
                raise SystemExit("generating the source checkpoint failed")
            result["generate"] = {k_: gen[k_] for k_ in ("wall_s", "ru_maxrss_bytes")}
            print(f"  {gen['wall_s']:.1f} s, peak RSS {gen['ru_maxrss_bytes'] / GiB:.2f} GiB")
        files = sorted(p for p in src.iterdir() if p.is_file() and not p.name.startswith("."))
        weights = [p for p in files if p.suffix == ".safetensors"]
        result["model"]["weights_bytes"] = sum(p.stat().st_size for p in weights)
        result["model"]["shards"] = len(weights)
        print(f"  {len(weights)} shards, {result['model']['weights_bytes'] / 1e9:.2f} GB, k = {k}")

        outs = {"streaming": work / "out-streaming", "plain": work / "out-plain"}
        cmds = {
            "streaming": [SERVE_BENCH, "prune", str(src), "--prune", str(PRUNE), "--divisor", "0",
                          "--out", str(outs["streaming"])],
            "plain": [PY, __file__, "_plain", str(src), str(outs["plain"]), str(k)],
        }
        dests = {"streaming": outs["streaming"] / f"{SOURCE_NAME}-ppm-p{round(PRUNE * 100)}",
                 "plain": outs["plain"]}
        if not args.cold:
            read_through(weights)
        runs: list[dict] = []
        result["runs"] = runs  # partial results survive a failure
        for i in range(1, args.runs + 1):
            for approach in ("streaming", "plain"):
                shutil.rmtree(outs[approach], ignore_errors=True)
                os.sync()
                if args.cold:
                    evict(weights)
                cached = cached_fraction(weights)
                print(f"run {i} {approach} (source {'?' if cached is None else f'{cached:.0%}'} in page cache) …",
                      flush=True)
                r = measure(cmds[approach], work / f"{approach}-{i}.log", env)
                r.update(approach=approach, run=i, source_cached_fraction=cached, load_avg=os.getloadavg())
                if r["returncode"] != 0:
                    print(r["log_tail"], file=sys.stderr)
                    raise SystemExit(f"{approach} run {i} failed with exit code {r['returncode']}")
                runs.append(r)
                print(f"  {r['wall_s']:.1f} s, ru_maxrss {r['ru_maxrss_bytes'] / GiB:.2f} GiB "
                      f"(poll: {r['poll_peak_bytes']['VmRSS'] / GiB:.2f} GiB, "
                      f"anon {r['poll_at_peak_rss_bytes']['RssAnon'] / GiB:.2f}, "
                      f"file {r['poll_at_peak_rss_bytes']['RssFile'] / GiB:.2f})"
                      + (f" phases {json.dumps({a: round(b, 1) for a, b in r['phases'].items()})}"
                         if r["phases"] else ""), flush=True)
            v = subprocess.run([PY, __file__, "_verify", str(dests["streaming"]), str(dests["plain"]), str(src),
                                str(k)], capture_output=True, text=True, env=env, cwd=REPO)
            for line in (v.stdout + v.stderr).strip().splitlines():
                print("  " + line)
            if v.returncode != 0:
                raise SystemExit(f"the two pruned checkpoints differ (run {i}); see above")
        result["verified"] = True
        result["summary"] = {"streaming": summarise(runs, "streaming"), "plain": summarise(runs, "plain")}
        s, p = result["summary"]["streaming"], result["summary"]["plain"]
        mem_ratio = p["ru_maxrss_bytes_median"] / s["ru_maxrss_bytes_median"]
        time_ratio = p["wall_s_median"] / s["wall_s_median"]
        result["target"] = {"memory_ratio": mem_ratio, "time_ratio": time_ratio,
                            "memory_met": mem_ratio >= 3, "time_met": time_ratio >= 1,
                            "met": mem_ratio >= 3 and time_ratio >= 1}
        result["parent_ru_maxrss_bytes"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
        result["machine"]["load_avg_after"] = os.getloadavg()
        table = markdown(result)
        result["markdown"] = table
        print()
        print(table)
        print()
        print(f"target (>= 3x less peak memory, no slower): memory {mem_ratio:.2f}x "
              f"{'met' if mem_ratio >= 3 else 'NOT met'}, time {time_ratio:.2f}x "
              f"{'met' if time_ratio >= 1 else 'NOT met'}")
        print(f"parent peak RSS {result['parent_ru_maxrss_bytes'] / GiB:.3f} GiB (a floor under every ru_maxrss)")
        ok = True
    finally:
        json_path.write_text(json.dumps(result, indent=2, default=str) + "\n")
        print(f"json: {json_path}")
        if args.keep and not ok:
            print(f"kept {work} (outputs and logs) for inspection")
        elif args.keep:
            for d in (work / "out-streaming", work / "out-plain"):
                shutil.rmtree(d, ignore_errors=True)
        else:
            shutil.rmtree(work, ignore_errors=True)
    return 0 if ok else 1


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "_generate":
        generate(Path(sys.argv[2]))
    elif len(sys.argv) > 1 and sys.argv[1] == "_plain":
        plain(Path(sys.argv[2]), Path(sys.argv[3]), int(sys.argv[4]))
    elif len(sys.argv) > 1 and sys.argv[1] == "_verify":
        verify(Path(sys.argv[2]), Path(sys.argv[3]), Path(sys.argv[4]), int(sys.argv[5]))
    else:
        sys.exit(main())
