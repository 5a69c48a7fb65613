from __future__ import annotations

from pathlib import Path

import pytest

from serve_bench.errors import LoadError
from serve_bench.measure.clock import now_s
from serve_bench.measure.records import RecordWriter, RequestRecord, read_records

pytestmark = pytest.mark.unit


def _record(i: int) -> RequestRecord:
    t = now_s()
    return RequestRecord(request_id=f"c1-{i}", stage="c1", worker_id="w0/u0", send_s=t, first_token_s=t + 0.1,
                         chunk_times_s=[t + 0.1, t + 0.2], last_token_s=t + 0.2, end_s=t + 0.2, prompt_tokens=64,
                         output_tokens=2, max_tokens=2, status=200, ok=True)


def test_writer_flushes_each_record_and_reader_round_trips(tmp_path: Path) -> None:
    path = tmp_path / "records.jsonl"
    r0, r1 = _record(0), _record(1)
    with RecordWriter(path) as w:
        w.write(r0)
        assert len(path.read_text().splitlines()) == 1  # on disk before close
        w(r1)
    assert read_records(path) == [r0, r1]  # floats survive the JSON round trip exactly
    with RecordWriter(path) as w:  # appends
        w.write(_record(2))
    assert [r.request_id for r in read_records(path)] == ["c1-0", "c1-1", "c1-2"]


def test_torn_last_line_is_skipped_but_a_bad_middle_line_is_an_error(tmp_path: Path) -> None:
    path = tmp_path / "records.jsonl"
    good = _record(0).model_dump_json()
    path.write_text(good + "\n" + good[:40])
    assert len(read_records(path)) == 1
    path.write_text(good[:40] + "\n" + good + "\n")
    with pytest.raises(LoadError, match="records.jsonl:1"):
        read_records(path)


def test_records_refuse_unknown_fields() -> None:
    with pytest.raises(ValueError):
        RequestRecord.model_validate({**_record(0).model_dump(), "ttft_ms": 3.0})
