"""The known-capacity engine's rules, in virtual time, against values worked out by hand."""

from __future__ import annotations

import numpy as np
import pytest

from serve_bench.simengine.params import EngineParams
from serve_bench.simengine.scheduler import Scheduler
from serve_bench.simengine.simulate import EPOCH_S, THINK_S, closed_loop, closed_loop_trace, open_loop, steady_rate

pytestmark = pytest.mark.unit

S, P = 0.010, 0.001  # step 10 ms, 1 ms per sequence
ENGINE = EngineParams(step_ms=10, per_seq_ms=1)


def gaps(times) -> np.ndarray:
    return np.diff(np.asarray(times), axis=-1)


def test_params_validate_and_describe_themselves():
    assert ENGINE.describe() == "step 10 ms + 1 ms/sequence + 0 ms/prefill token, 256 slots, jitter 0"
    assert "500 prefill tokens/step" in EngineParams(max_prefill_tokens=500).describe()
    for bad in ({"jitter": 1.5}, {"step_ms": -1}, {"max_num_seqs": 0}, {"step_ms": float("inf")}, {"stepms": 1}):
        with pytest.raises(ValueError):
            EngineParams(**bad)


def test_one_user_gets_its_first_token_one_step_after_sending():
    trace = closed_loop_trace(ENGINE, users=1, requests=5, prompt_tokens=8, output_tokens=4)
    # an idle engine starts a step at the arrival: prefill in a batch of one (10 + 1 ms), then a token a step
    assert trace.tokens_s[:, 0] - trace.send_s == pytest.approx([S + P] * 5, abs=1e-12)
    assert gaps(trace.tokens_s).ravel() == pytest.approx([S + P] * 15, abs=1e-12)
    # the next request is sent think_s after the last token
    assert trace.send_s[1:] - trace.tokens_s[:-1, -1] == pytest.approx([THINK_S] * 4, abs=1e-12)


def test_records_are_what_a_perfect_client_would_write():
    recs = closed_loop(ENGINE, users=2, requests=6, prompt_tokens=8, output_tokens=4, stage="c2")
    r = recs[0]
    assert [x.request_id for x in recs] == [f"c2-{i}" for i in range(6)]
    assert r.worker_id == "sim/u0" and recs[1].worker_id == "sim/u1" and r.stage == "c2" and r.profile is None
    assert r.send_s == pytest.approx(EPOCH_S) and r.intended_send_s is None
    assert len(r.chunk_times_s) == 4 and r.first_token_s == r.chunk_times_s[0]
    assert r.last_token_s == r.end_s == r.chunk_times_s[-1]
    assert (r.prompt_tokens, r.output_tokens, r.max_tokens, r.requested_output_tokens) == (8, 4, 4, 4)
    assert r.ok and r.status == 200 and r.error is None and not r.warmup
    assert type(r).model_validate_json(r.model_dump_json()) == r  # a valid record, as the files hold them


@pytest.mark.parametrize("users", [2, 8, 32])
def test_users_settle_into_two_groups_and_the_rate_is_the_cycle(users):
    # User 0 sends first and starts a step alone; the others, a microsecond behind, join at its end. From then
    # on user 0 is one step ahead: a cycle is user 0's prefill alone (s + p), out - 1 steps of all N users
    # (s + N·p), and one step of the others alone (s + (N - 1)·p) while user 0's next request waits:
    #     C = (out + 1)·s + out·N·p,   rate = N / C.
    out = 4
    trace = closed_loop_trace(ENGINE, users=users, requests=100 * users, prompt_tokens=8, output_tokens=out)
    ahead = trace.user == 0
    later = slice(10 * users, 90 * users)  # after the start-up, before the run-down
    ttft = (trace.tokens_s[:, 0] - trace.send_s)[later]
    g = gaps(trace.tokens_s)[later]
    a, b = ahead[later], ~ahead[later]
    # user 0 waits out the others' last step, then is prefilled alone; they wait out that step, then join
    assert ttft[a] == pytest.approx(S + (users - 1) * P - THINK_S + S + P, abs=1e-9)
    assert ttft[b] == pytest.approx(S + P - THINK_S + S + users * P, abs=1e-9)
    assert g[a].ravel() == pytest.approx(S + users * P, abs=1e-9)
    assert g[b][:, :-1].ravel() == pytest.approx(S + users * P, abs=1e-9)
    assert g[b][:, -1] == pytest.approx(S + (users - 1) * P, abs=1e-9)  # user 0 has left
    cycle = (out + 1) * S + out * users * P
    recs = closed_loop(ENGINE, users=users, requests=100 * users, prompt_tokens=8, output_tokens=out)
    assert steady_rate(recs, users) == pytest.approx(users / cycle, rel=1e-3)


def test_fewer_slots_than_users_queue_for_a_whole_request():
    # 8 users, 4 slots: two groups of 4 take turns, each request waiting out the other group's whole request
    # (out steps of s + 4p) and then its own prefill step: TTFT = (out + 1)(s + 4p) − think
    out = 4
    engine = EngineParams(step_ms=10, per_seq_ms=1, max_num_seqs=4)
    trace = closed_loop_trace(engine, users=8, requests=400, prompt_tokens=8, output_tokens=out)
    steady = slice(40, 360)
    assert (trace.tokens_s[:, 0] - trace.send_s)[steady] == pytest.approx((out + 1) * (S + 4 * P) - THINK_S,
                                                                          abs=1e-9)
    assert gaps(trace.tokens_s)[steady].ravel() == pytest.approx(S + 4 * P, abs=1e-9)
    # one slot, three users: the queue ahead is two whole requests
    one = EngineParams(step_ms=10, per_seq_ms=1, max_num_seqs=1)
    trace = closed_loop_trace(one, users=3, requests=60, prompt_tokens=8, output_tokens=out)
    assert (trace.tokens_s[:, 0] - trace.send_s)[6:54] == pytest.approx((2 * out + 1) * (S + P) - THINK_S,
                                                                        abs=1e-9)
    recs = closed_loop(one, users=3, requests=60, prompt_tokens=8, output_tokens=out)
    assert steady_rate(recs, 3) == pytest.approx(1 / (out * (S + P)), rel=1e-6)  # one sequence at a time


def test_jitter_zero_is_deterministic_and_a_seed_repeats():
    kw = dict(users=4, requests=200, prompt_tokens=8, output_tokens=8)
    a, b = (closed_loop_trace(ENGINE, **kw).tokens_s for _ in range(2))
    assert np.array_equal(a, b)
    same = [closed_loop_trace(EngineParams(jitter=0.3, seed=5), **kw).tokens_s for _ in range(2)]
    other = closed_loop_trace(EngineParams(jitter=0.3, seed=6), **kw).tokens_s
    assert np.array_equal(same[0], same[1]) and not np.array_equal(same[0], other)
    # one user: every gap is one step of 11 ms times its own factor, of mean 1
    factors = gaps(closed_loop_trace(EngineParams(step_ms=10, per_seq_ms=1, jitter=0.2, seed=1), users=1,
                                     requests=100, prompt_tokens=8, output_tokens=40).tokens_s).ravel() / (S + P)
    assert np.unique(np.round(factors, 9)).size == factors.size  # no two steps alike
    assert factors.mean() == pytest.approx(1.0, abs=0.03)  # 3,900 steps: the mean is within 0.7% (1 s.e.)
    assert np.log(factors).std() == pytest.approx(0.2, rel=0.1)


def test_the_prefill_budget_splits_admission_and_a_long_prompt_still_runs():
    p = EngineParams(step_ms=10, per_seq_ms=1, per_prefill_token_ms=0.01, max_prefill_tokens=1000)
    sched = Scheduler(p)
    a = sched.submit("a", 0.0, 1500, 2)  # over the budget on its own: admitted anyway, alone
    b1 = sched.step()
    assert b1.admitted == [a] and b1.next_s == pytest.approx((10 + 1 + 15) / 1000)
    for i in range(3):  # arrive while a's prefill step runs
        sched.submit(f"r{i}", 0.001 * (i + 1), 400, 2)
    b2 = sched.step()  # a's first token; r0 and r1 fit (800 ≤ 1000), r2 would make 1,200
    assert b2.first == [a] and [s.rid for s in b2.admitted] == ["r0", "r1"]
    assert b2.next_s - b2.t_s == pytest.approx((10 + 3 * 1 + 800 * 0.01) / 1000)
    b3 = sched.step()  # a finishes; r2 is admitted now, one boundary later than it could have been
    assert b3.finished == [a] and [s.rid for s in b3.admitted] == ["r2"] and b3.admitted[0].queued_steps == 1
    assert b3.next_s - b3.t_s == pytest.approx((10 + 3 * 1 + 400 * 0.01) / 1000)
    assert b2.admitted[0].queued_steps == 0


def test_the_scheduler_idles_and_starts_a_step_at_the_next_arrival():
    sched = Scheduler(ENGINE)
    assert not sched.busy
    seq = sched.submit("a", 5.0, 1, 2)
    assert sched.next_s == 5.0
    times = []
    while sched.busy:
        times.append(sched.step().t_s)
    assert times == pytest.approx([5.0, 5.011, 5.022]) and seq.finished and sched.next_s is None
    assert (seq.admitted_s, seq.first_token_s, seq.last_token_s, seq.queued_steps) == (5.0, times[1], times[2], 0)
    late = sched.submit("b", 7.0, 1, 1)
    assert sched.next_s == 7.0 and sched.step().admitted == [late]
    # a request arriving just after a boundary, while its step runs, waits for the next one
    sched.submit("c", 7.0005, 1, 1)
    b = sched.step()
    assert b.t_s == pytest.approx(7.011) and [s.rid for s in b.admitted] == ["c"]
    with pytest.raises(ValueError, match="arrival order"):
        sched.submit("d", 7.0, 1, 1)


def test_an_abort_frees_the_slot_at_once():
    sched = Scheduler(EngineParams(step_ms=10, per_seq_ms=1, max_num_seqs=1))
    a = sched.submit("a", 0.0, 1, 100)
    b = sched.submit("b", 0.0, 1, 1)
    sched.step()
    assert sched.running == 1 and list(sched.waiting) == [b]
    sched.abort(a)
    assert sched.step().admitted == [b]
    waiting = sched.submit("c", 1.0, 1, 1)
    sched.abort(waiting)  # never admitted
    while sched.busy:
        sched.step()
    assert b.finished and not a.finished and waiting.admitted_k == -1


def test_open_loop_records_intend_what_they_send():
    recs = open_loop(ENGINE, rate_rps=20, requests=50, prompt_tokens=8, output_tokens=4, arrivals="constant")
    assert [r.send_s - EPOCH_S for r in recs] == pytest.approx([i / 20 for i in range(50)], abs=1e-6)
    assert all(r.intended_send_s == r.send_s for r in recs)
    # 50 ms apart, each alone: every answer takes 4 steps of 11 ms
    assert {round((r.last_token_s - r.send_s) * 1000, 3) for r in recs} == {44.0}
    poisson = open_loop(ENGINE, rate_rps=200, requests=400, prompt_tokens=8, output_tokens=4, seed=3)
    assert [r.chunk_times_s for r in poisson] == [r.chunk_times_s for r in open_loop(
        ENGINE, rate_rps=200, requests=400, prompt_tokens=8, output_tokens=4, seed=3)]
    span = poisson[-1].send_s - poisson[0].send_s
    assert 399 / span == pytest.approx(200, rel=0.15)
