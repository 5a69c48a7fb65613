"""Host noise: another process's CPU time during a stage is seen and flags the stage; our own (children of
this process) is not counted against it."""

from __future__ import annotations

import subprocess
import sys
import time

import psutil
import pytest

from serve_bench.measure.stage_result import STAGE_FLAGS
from serve_bench.observe.host_noise import CONTENDED_CORES, HostNoise
from serve_bench.rundir import StageFile

pytestmark = pytest.mark.system  # starts busy processes for a few seconds

BUSY = "import time\nt = time.time()\nwhile time.time() - t < {s}: pass\n"


def test_a_stranger_busy_during_the_stage_flags_it_and_our_own_child_does_not(tmp_path):
    noise = HostNoise()
    # our own child: counted as ours
    noise.begin()
    subprocess.run([sys.executable, "-c", BUSY.format(s=2.0)], check=True)
    ours = noise.stage()
    assert ours["ours_cores"] > 0.6
    # a process that is not ours (orphaned by its shell, so not a descendant of this process)
    pidfile = tmp_path / "pid"
    subprocess.run(["sh", "-c", f"{sys.executable} -c '{BUSY.format(s=4.0)}' & echo $! > {pidfile}"], check=True)
    stranger = psutil.Process(int(pidfile.read_text()))
    assert stranger.pid not in {p.pid for p in psutil.Process().children(recursive=True)}
    noise.begin()
    time.sleep(2.5)
    busy = noise.stage()
    stranger.wait(10)
    assert busy["others_cores"] >= CONTENDED_CORES and busy["contended"], busy
    # the busy child of the first phase was not counted as another's (whatever else this host runs)
    assert busy["others_cores"] - ours["others_cores"] > 0.6, (ours, busy)
    assert "other processes used" in busy["why"]
    # and the stage's result file carries the flag in the words every view uses
    stage = StageFile(checkpoint="c", stage="s", kind="concurrency", target={"users": 1}, started_s=0, ended_s=1,
                      warmup_end_s=None, records=0, summary={}, host=busy, host_contended=busy["contended"])
    assert stage.flags == {"host_contended": STAGE_FLAGS["host_contended"]}
