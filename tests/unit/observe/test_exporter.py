"""The exporter's numbers, scraped over HTTP and parsed as Prometheus parses them."""

from __future__ import annotations

import math
import urllib.request

import pytest
from prometheus_client.parser import text_string_to_metric_families

from serve_bench.load.live import LiveStage
from serve_bench.measure.records import RequestRecord
from serve_bench.observe import names as n
from serve_bench.observe.exporter import Exporter, outcome

pytestmark = pytest.mark.unit
T0 = 1_700_000_000.0


def rec(i: int, chunks: list[float], *, stage: str = "c2", intended: float | None = None, ok: bool = True,
        status: int = 200, error: str | None = None, warmup: bool = False) -> RequestRecord:
    c = [T0 + x for x in chunks]
    return RequestRecord(request_id=f"{stage}-{i}", stage=stage, profile="p", worker_id="w0/u0", send_s=T0,
                         intended_send_s=None if intended is None else T0 + intended, first_token_s=c[0] if c else None,
                         chunk_times_s=c, last_token_s=c[-1] if c else None, end_s=c[-1] if c else T0 + 1,
                         prompt_tokens=5 if ok else None, output_tokens=len(c) if ok else None, max_tokens=4,
                         status=status, error=error, ok=ok, warmup=warmup)


def scrape(url: str) -> dict[tuple[str, tuple], float]:
    text = urllib.request.urlopen(url, timeout=5).read().decode()
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for fam in text_string_to_metric_families(text) for s in fam.samples}


def test_records_live_stage_and_energy_as_prometheus_sees_them() -> None:
    live = LiveStage(checkpoint="base")
    exp = Exporter(live, slos_ms={"ttft_ms": 150})
    url = exp.start("127.0.0.1", 0)
    try:
        live.begin("p", "c2", "concurrency", {"users": 2}, lambda: 2, lambda: 0.4)
        exp.stage_target(("base", "p", "c2"), "concurrency", "2 users", {"users": 2})
        exp.observe(rec(0, [0.095, 0.105, 0.12, 0.155]), "base")  # ttft 95 ms: good; itl 10, 15, 35 ms
        exp.observe(rec(1, [0.2, 0.25]), "base")  # ttft 200 ms: not good
        exp.observe(rec(2, [], ok=False, status=503, error="HTTP 503: busy"), "base")
        exp.observe(rec(3, [0.05], warmup=True), "base")  # warm-up: left out, as in every statistic
        exp.set_energy("gpu0", 120.0, 300.0)
        got = scrape(url)
    finally:
        exp.close()
    stage = (("checkpoint", "base"), ("profile", "p"), ("stage", "c2"))
    assert got[(n.REQUESTS.name, tuple(sorted((*stage, ("outcome", "ok")))))] == 2
    assert got[(n.REQUESTS.name, tuple(sorted((*stage, ("outcome", "http_5xx")))))] == 1
    assert got[(n.OUTPUT_TOKENS.name, stage)] == 6 and got[(n.PROMPT_TOKENS.name, stage)] == 10
    assert got[(n.GOOD_REQUESTS.name, stage)] == 1
    assert got[(n.TTFT.name + "_count", stage)] == 2
    assert got[(n.TTFT.name + "_sum", stage)] == pytest.approx(0.295)
    assert got[(n.TTFT.name + "_bucket", tuple(sorted((*stage, ("le", "0.1")))))] == 1
    assert got[(n.TTFT.name + "_bucket", tuple(sorted((*stage, ("le", "0.09")))))] == 0
    assert got[(n.ITL.name + "_count", stage)] == 4  # 3 gaps + 1 gap
    assert got[(n.ITL.name + "_bucket", tuple(sorted((*stage, ("le", "0.02")))))] == 2  # 10 and 15 ms
    assert got[(n.ITL.name + "_sum", stage)] == pytest.approx(0.06 + 0.05)
    assert got[(n.IN_FLIGHT.name, stage)] == 2 and got[(n.TARGET_USERS.name, stage)] == 2
    assert got[(n.STAGE_INFO.name, tuple(sorted((*stage, ("kind", "concurrency"), ("load", "2 users")))))] == 1
    assert got[(n.LOADGEN_CPU.name, ())] == pytest.approx(0.4)
    assert got[(n.ENERGY.name, (("device", "gpu0"),))] == 120.0 and got[(n.POWER.name, (("device", "gpu0"),))] == 300
    exposed = {name for name, _ in got}
    assert exposed <= n.exposed_names() | {n.ENERGY.name.removesuffix("_total") + "_created"}


def test_open_loop_latency_counts_from_the_schedule() -> None:
    live = LiveStage(checkpoint="b")
    exp = Exporter(live)
    exp.observe(rec(0, [0.1, 0.2], stage="r1", intended=-0.05), "b")  # sent 50 ms late
    exp.fold()
    st = exp._stages[("b", "p", "r1")]
    assert st.hists[n.TTFT.name].total == pytest.approx(0.15)
    assert st.hists[n.SEND_LAG.name].total == pytest.approx(0.05)
    assert st.good == 1  # no SLOs: every completed request meets the empty set


def test_outcome_kinds_are_few() -> None:
    assert outcome(rec(0, [0.1])) == "ok"
    assert outcome(rec(0, [], ok=False, status=401, error="HTTP 401")) == "http_4xx"
    assert outcome(rec(0, [], ok=False, status=0, error="timeout: no complete response after 5 s")) == "timeout"
    assert outcome(rec(0, [], ok=False, status=0, error="connection refused: x")) == "refused"
    assert outcome(rec(0, [], ok=False, status=0, error="the stage stopped before the response finished")) == \
        "aborted"
    assert outcome(rec(0, [], ok=False, status=0, error="prompt 3: cannot build")) == "prompt"
    assert outcome(rec(0, [], ok=False, status=0, error="something new")) == "other"


def test_energy_not_measured_is_nan_never_zero() -> None:
    live = LiveStage(checkpoint="base")
    exp = Exporter(live)
    url = exp.start("127.0.0.1", 0)
    try:
        exp.observe(rec(0, [0.1, 0.2]), "base")
        got = scrape(url)
    finally:
        exp.close()
    stage = (("checkpoint", "base"), ("profile", "p"), ("stage", "c2"))
    nan = [got[(n.ENERGY.name, (("device", "none"),))], got[(n.POWER.name, (("device", "none"),))],
           got[(n.IDLE_POWER.name, (("checkpoint", "base"), ("device", "none")))],
           got[(n.ENERGY_PER_TOKEN.name, tuple(sorted((*stage, ("basis", "gross")))))],
           got[(n.ENERGY_PER_TOKEN.name, tuple(sorted((*stage, ("basis", "net")))))]]
    assert all(math.isnan(v) for v in nan)
