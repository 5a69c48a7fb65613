"""Metric definitions on hand-built records whose answers are worked out by hand below."""

from __future__ import annotations

import numpy as np
import pytest

from serve_bench.measure.metrics import percentile, summarize
from serve_bench.measure.records import RequestRecord

pytestmark = pytest.mark.unit

T0 = 1_700_000_000.0


def rec(i: int, send: float, chunks: list[float], out: int, *, prompt: int = 10, intended: float | None = None,
        ok: bool = True, warmup: bool = False, status: int = 200, error: str | None = None) -> RequestRecord:
    chunks_abs = [T0 + c for c in chunks]
    return RequestRecord(request_id=f"s-{i}", stage="s", worker_id="w0/u0", send_s=T0 + send,
                         intended_send_s=None if intended is None else T0 + intended,
                         first_token_s=chunks_abs[0] if chunks_abs else None, chunk_times_s=chunks_abs,
                         last_token_s=chunks_abs[-1] if chunks_abs else None,
                         end_s=T0 + (chunks[-1] if chunks else send + 0.5),
                         prompt_tokens=prompt if ok else None, output_tokens=out if ok else None, max_tokens=4,
                         status=status, error=error, ok=ok, warmup=warmup)


def test_closed_loop_known_answers() -> None:
    # A: send 0, chunks at 1, 2, 3, 4 (4 tokens)   ttft 1, e2el 4, tpot (4-1)/3 = 1, itl 1,1,1, ntpot 1
    # B: send 1, chunks at 1.5, 2.5, 3.5 (4 tokens, one chunk carried 2)  ttft .5, e2el 2.5, tpot 2/3, itl 1,1
    # C: failed at send 2 (transport error), ends at 2.5
    records = [rec(0, 0.0, [1.0, 2.0, 3.0, 4.0], 4),
               rec(1, 1.0, [1.5, 2.5, 3.5], 4),
               rec(2, 2.0, [], 0, ok=False, status=0, error="connection refused")]
    s = summarize(records)
    assert s["completed"] == 2 and s["failed"] == 1 and s["attempted"] == 3
    assert s["duration"] == pytest.approx(4.0)  # last response (4.0) - first send (0.0)
    assert s["total_input_tokens"] == 20 and s["total_output_tokens"] == 8
    assert s["request_throughput"] == pytest.approx(2 / 4.0)
    assert s["output_throughput"] == pytest.approx(8 / 4.0)
    assert s["total_token_throughput"] == pytest.approx(28 / 4.0)
    assert s["mean_ttft_ms"] == pytest.approx(750.0)
    assert s["median_ttft_ms"] == pytest.approx(750.0)
    assert s["std_ttft_ms"] == pytest.approx(250.0)
    assert s["mean_e2el_ms"] == pytest.approx(3250.0)
    assert s["mean_tpot_ms"] == pytest.approx((1000.0 + 2000.0 / 3) / 2)
    assert s["mean_itl_ms"] == pytest.approx(1000.0) and s["n_itl"] == 5
    assert s["mean_ntpot_ms"] == pytest.approx((1000.0 + 625.0) / 2)
    assert s["p99.9_ttft_ms"] == pytest.approx(500 + 0.999 * 500)
    assert s["n_ttft"] == 2 and s["percentile_method"] == "linear"
    assert s["errors"] == {"connection refused": 1}
    assert not s["open_loop"] and "mean_send_lag_ms" not in s


def test_open_loop_from_intended_and_send_lag() -> None:
    # intended 0 sent 0.25 (lag .25); intended 1 sent 1.0 (lag 0)
    records = [rec(0, 0.25, [1.0, 2.0], 2, intended=0.0), rec(1, 1.0, [1.5, 2.0], 2, intended=1.0)]
    s = summarize(records)
    assert s["open_loop"]
    assert s["mean_ttft_ms"] == pytest.approx((750 + 500) / 2)
    assert s["mean_ttft_from_intended_ms"] == pytest.approx((1000 + 500) / 2)
    assert s["mean_e2el_from_intended_ms"] == pytest.approx((2000 + 1000) / 2)
    assert s["mean_send_lag_ms"] == pytest.approx(125.0)
    assert s["max_send_lag_ms"] == pytest.approx(250.0)


def test_goodput_and_slo_attainment_count_errors_as_not_good() -> None:
    records = [rec(0, 0.0, [0.1, 0.2], 2),   # ttft 100 ms: good
               rec(1, 0.0, [0.9, 1.0], 2),   # ttft 900 ms: not good
               rec(2, 0.0, [], 0, ok=False, status=500, error="HTTP 500")]
    s = summarize(records, slos_ms={"ttft_ms": 500})
    assert s["good"] == 1
    assert s["slo_attainment"] == pytest.approx(1 / 3)
    assert s["request_goodput"] == pytest.approx(1 / s["duration"])
    with pytest.raises(ValueError, match="unknown SLO"):
        summarize(records, slos_ms={"latency": 1})


def test_warmup_records_are_left_out_of_statistics() -> None:
    records = [rec(0, 0.0, [5.0], 1, warmup=True), rec(1, 1.0, [1.2], 1), rec(2, 2.0, [2.4], 1)]
    s = summarize(records)
    assert s["completed"] == 2 and s["warmup_excluded"] == 1
    assert s["duration"] == pytest.approx(1.4)  # first measured send 1.0, last response 2.4
    by_time = summarize(records[1:], warmup_end_s=T0 + 1.5)
    assert by_time["completed"] == 1 and by_time["mean_ttft_ms"] == pytest.approx(400.0)


def test_no_samples_is_not_measured_rather_than_zero() -> None:
    s = summarize([rec(0, 0.0, [], 0, ok=False, status=0, error="x")])
    assert s["completed"] == 0 and s["mean_ttft_ms"] is None and s["p99_ttft_ms"] is None
    assert summarize([])["duration"] is None


def test_single_token_output_has_no_tpot() -> None:
    s = summarize([rec(0, 0.0, [0.5], 1)])
    assert s["n_tpot"] == 0 and s["mean_tpot_ms"] is None and s["n_ttft"] == 1


@pytest.mark.parametrize("p", [0, 1, 25, 50, 90, 95, 99, 99.9, 100])
def test_percentiles_match_numpy_linear(p: float) -> None:
    values = np.random.default_rng(3).lognormal(size=101).tolist()
    assert percentile(values, p) == pytest.approx(float(np.percentile(values, p, method="linear")))
    # by hand for a small case: [1, 2, 3, 4] at p=90 -> rank 0.9*3 = 2.7 -> 3 + 0.7*(4-3)
    assert percentile([4.0, 1.0, 3.0, 2.0], 90) == pytest.approx(3.7)


def user_rec(user: int, send: float, end: float, out: int = 4, intended: float | None = None) -> RequestRecord:
    """A request of ``user`` with ``out`` chunks of one token each, evenly spread up to ``end``."""
    step = (end - send) / out
    chunks = [T0 + send + step * (k + 1) for k in range(out)]
    return RequestRecord(request_id=f"s-{user}-{send}", stage="s", worker_id=f"w0/u{user}", send_s=T0 + send,
                         intended_send_s=None if intended is None else T0 + intended, first_token_s=chunks[0],
                         chunk_times_s=chunks, last_token_s=chunks[-1], end_s=chunks[-1], prompt_tokens=10,
                         output_tokens=out, max_tokens=out, status=200, ok=True)


def test_closed_loop_steady_window_is_while_every_user_is_busy() -> None:
    # user 0: requests [0, 2], [2, 4], [4, 6]; user 1 starts late (spawned 1 s after) and ends early:
    # [1, 3], [3, 5]. Both busy from 1 (user 1's first send) to 5 (user 1's last end).
    recs = [user_rec(0, 0, 2), user_rec(0, 2, 4), user_rec(0, 4, 6), user_rec(1, 1, 3), user_rec(1, 3, 5)]
    s = summarize(recs, users=2)
    assert (s["steady_window_start_s"], s["steady_window_end_s"]) == (T0 + 1, T0 + 5)
    assert s["steady_basis"] == "all 2 users busy"
    assert s["steady_mean_in_flight"] == pytest.approx(2.0)
    # tokens (one per chunk) arriving in [1, 5]: user 0: 0.5,1,1.5,2 | 2.5,3,3.5,4 | 4.5,5 -> 1,1.5,2 + 4 + 4.5,5
    # = 3 + 4 + 2 = 9; user 1: 1.5,2,2.5,3 | 3.5,4,4.5,5 -> 8. 17 tokens over 4 s.
    assert s["steady_output_throughput"] == pytest.approx(17 / 4)
    assert s["steady_request_throughput"] == pytest.approx(4 / 4)  # ends at 2, 3, 4, 5
    # vLLM's duration (0 to 6) includes the lone user's start and drain
    assert s["mean_in_flight"] == pytest.approx(10 / 6)
    assert s["output_throughput"] == pytest.approx(20 / 6)
    assert summarize(recs, users=3)["steady_output_throughput"] is None  # a user never sent: never all busy
    assert summarize(recs)["steady_window_start_s"] is None  # a ramp (no users given) has no steady state


@pytest.mark.parametrize("waves", [1, 2, 3, 12])
@pytest.mark.parametrize("users", [2, 8, 24])
def test_closed_loop_request_rate_is_exact_when_users_finish_in_lock_step_waves(users: int, waves: int) -> None:
    # fixed lengths: every request takes 1.6 s and its user sends the next one 2 ms after the last ended;
    # users start 5 ms apart, so they finish in waves. The truth: each user completes one request per 1.602 s.
    life, gap, spread = 1.6, 0.002, 0.005
    recs = [user_rec(u, u * spread + w * (life + gap), u * spread + w * (life + gap) + life)
            for u in range(users) for w in range(waves)]
    s = summarize(recs, users=users)
    truth = users / (life + gap)
    # counting whole completions in the window (it ends at user 0's last end) missed most of the last wave
    assert s["steady_request_throughput"] == pytest.approx(truth, rel=0.01)
    if waves == 12:  # the token rate agrees, once the window holds many chunks (4 tokens a request)
        assert s["steady_output_throughput"] / 4 == pytest.approx(truth, rel=0.02)


def test_open_loop_steady_window_starts_one_median_latency_after_the_schedule() -> None:
    recs = [user_rec(i, i + 0.01, i + 2.01, intended=float(i)) for i in range(6)]  # e2el 2 s each, 1 req/s
    s = summarize(recs)
    assert s["latency_from"] == "intended send"
    assert (s["steady_window_start_s"], s["steady_window_end_s"]) == (pytest.approx(T0 + 2.0), T0 + 5.0)
    assert s["steady_mean_in_flight"] == pytest.approx(2.0, abs=0.02)
    assert s["steady_request_throughput"] == pytest.approx(1.0, abs=0.34)


def test_vectorised_definitions_equal_the_per_request_ones() -> None:
    from serve_bench.measure import metrics as m

    done = [rec(0, 0.0, [1.0, 2.0, 3.5, 4.0], 4), rec(1, 1.0, [1.5], 1),
            rec(2, 2.0, [2.2, 2.3, 2.9], 5, intended=1.9), rec(3, 3.0, [3.1, 3.3], 2, intended=2.5),
            rec(4, 0.5, [0.9, 1.9], 3)]
    a = m.request_arrays(done)
    intended = [r.intended_send_s is not None for r in done]
    assert a["ttft"] == pytest.approx([m.ttft_s(r, from_intended=i) for r, i in zip(done, intended)])
    assert a["e2el"] == pytest.approx([m.e2el_s(r, from_intended=i) for r, i in zip(done, intended)])
    assert a["tpot"] == pytest.approx([t for r in done if (t := m.tpot_s(r)) is not None])
    assert a["ntpot"] == pytest.approx([m.ntpot_s(r) for r in done])
    assert a["send_lag"] == pytest.approx([m.send_lag_s(r) for r in done if r.intended_send_s is not None])
    assert a["itl"] == pytest.approx([g for r in done for g in m.itls_s(r)])
    for slos in ({"ttft_ms": 600}, {"itl_ms": 700, "tpot_ms": 600}, {"e2el_ms": 1500, "ntpot_ms": 500}, {}):
        assert list(m.good_mask(a, slos)) == [m.is_good(r, slos) for r in done], slos
