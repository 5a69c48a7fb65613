"""Prompts for a stage bounded by time alone, built in a separate process while the stage runs.

How many requests such a stage sends is unknown before it runs, and building a
synthetic prompt costs tokenizer calls that would block the load generator's
event loop (and with it the timestamps of every stream in flight). So the
prompts beyond those built before the stage come from a child process
(``python -m serve_bench.load.prompt_feed``) that builds them in the order this
process will use them and writes one JSON line each to a pipe. The pipe is the
back-pressure: the child blocks once it is a pipe-buffer ahead, and reading a
line costs the event loop microseconds. A prompt the child cannot build comes
through as that request's error; a child that dies fails the remaining
requests with a message, and never hangs the stage.
"""

from __future__ import annotations

import itertools
import json
import subprocess
import sys
from typing import Any

import gevent  # the load process's event loop (its driver patched the process); the child never waits on it
import gevent.lock

from serve_bench.load.stage_state import index_of
from serve_bench.processes import die_with_parent
from serve_bench.workload.prompt_sources import prompt_set_from_spec
from serve_bench.workload.prompts import PromptError, PromptSet

WAIT_S = 120.0  # a fed prompt not there by then: the child is stuck


class PromptFeed:
    """The parent's end: start the child, hand out fed prompts by index."""

    def __init__(self, prompts: PromptSet, *, offset: int, slots: list[int], period: int, start_k: int) -> None:
        self._lock = gevent.lock.Semaphore()
        spec = {"set": prompts.spec(), "offset": offset, "slots": slots, "period": period, "start_k": start_k}
        self.proc = subprocess.Popen([sys.executable, "-m", "serve_bench.load.prompt_feed"], stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE, stderr=subprocess.PIPE, preexec_fn=die_with_parent)
        assert self.proc.stdin is not None
        self.proc.stdin.write(json.dumps(spec).encode() + b"\n")
        self.proc.stdin.close()
        self.prompts = prompts

    def get(self, index: int, cache: dict[int, Any]) -> str | PromptError:
        """Read the pipe until ``index`` has come (users take indices in order, so it is near)."""
        with self._lock:
            while index not in cache:
                try:
                    with gevent.Timeout(WAIT_S):
                        line = self.proc.stdout.readline() if self.proc.stdout else b""
                except gevent.Timeout:
                    return PromptError(f"prompt {index}: the prompt builder sent nothing for {WAIT_S:.0f} s")
                if not line:
                    return PromptError(f"prompt {index}: the prompt builder exited ({self._why()})")
                item = json.loads(line)
                cache[item["i"]] = PromptError(item["e"]) if "e" in item else item["t"]
        return cache.pop(index)

    def _why(self) -> str:
        code = self.proc.poll()
        err = (self.proc.stderr.read() or b"").decode(errors="replace").strip().splitlines() if code is not None \
            and self.proc.stderr else []
        return f"exit code {code}" + (f": {err[-1]}" if err else "")

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait()
        for stream in (self.proc.stdout, self.proc.stderr):
            if stream:
                stream.close()
        self.prompts.feed = None


def start_feed(prompts: PromptSet, *, offset: int, slots: list[int], period: int, start_k: int) -> None:
    """Attach a feed to ``prompts`` when its prompts are costly to build; cheap ones are built on use."""
    if prompts.costly and prompts.feed is None:
        prompts.feed = PromptFeed(prompts, offset=offset, slots=slots, period=period, start_k=start_k)


def stop_feed(prompts: PromptSet) -> None:
    if prompts.feed is not None:
        prompts.feed.close()


def main() -> int:
    spec = json.loads(sys.stdin.readline())
    prompts = prompt_set_from_spec(spec["set"])
    out = sys.stdout.buffer
    try:
        for k in itertools.count(spec["start_k"]):
            index = spec["offset"] + index_of(k, spec["slots"], spec["period"])
            got = prompts.attempt(index)
            item = {"i": index, "e": str(got)} if isinstance(got, PromptError) else {"i": index, "t": got}
            out.write(json.dumps(item).encode() + b"\n")
            out.flush()
    except (BrokenPipeError, KeyboardInterrupt):
        return 0
    return 0


if __name__ == "__main__":
    sys.exit(main())
