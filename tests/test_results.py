"""Result rows: provenance, and rows read back as the type they were written as."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from coldstart.analysis.results import (
    SCHEMA_VERSION,
    AnswerCheck,
    Audit,
    ClientResult,
    ClientStatus,
    GanttSpan,
    MilestoneTime,
    Provenance,
    ResultRow,
    RunStatus,
    SchemaError,
    StoredTimeline,
    append_row,
    load_rows,
    parse_rows,
)


def test_shipped_commit_wins_over_the_copys_own_git(monkeypatch, tmp_path):
    # The GPU machine's copy may hold a stale .git: the commit the caller shipped is the truth.
    from coldstart.analysis import results as res

    monkeypatch.setenv("COLDSTART_GIT_COMMIT", "b3f09b8")
    monkeypatch.setattr(res, "_git", lambda *a, **k: "cc2cadae2e9132259ef1045affe336590f45e8ce")
    prov = res.collect_provenance()
    assert prov.git_commit == "b3f09b8"
    assert prov.git_dirty is None


def test_boot_id_names_the_machine_boot_and_is_none_where_there_is_none(tmp_path):
    from coldstart.analysis import results as res

    f = tmp_path / "boot_id"
    f.write_text("5f1c-boot\n")
    assert res.boot_id(f) == "5f1c-boot"
    assert res.boot_id(tmp_path / "absent") is None


# ---------------------------------------------------------------------------------------------------------
# Rows read back as the type they were written as

COMMITTED = Path(__file__).resolve().parent.parent / "results" / "results.jsonl"


def _client(**kw) -> ClientResult:
    base = dict(
        schema_version=1,
        url="http://127.0.0.1:8000/v1/chat/completions",
        model="tiny",
        status=ClientStatus.OK,
        error=None,
        ttft_s=12.0,
        total_s=13.0,
        tokens=5,
        t_send_epoch=1.0e9,
        t_first_token_epoch=1.0e9 + 12.0,
        t_last_token_epoch=1.0e9 + 13.0,
        first_text="hi",
        http_status=200,
        text="hi there",
    )
    return ClientResult(**{**base, **kw})


def _row(**kw) -> ResultRow:
    base = dict(
        run_id="r1",
        model="tiny",
        experiment="compile_cache",
        repeat=0,
        status=RunStatus.OK,
        ttft_s=12.0,
        phases={"model_load_s": 1.5, "cuda_graph_s": None},
        audit=Audit(compile_cache_hit=True, aot_cache_hit=None, expected_compile_cache_hit=True, passed=True),
        log_path="experiment_terminal_output/tiny/compile_cache/r1.log",
        provenance=Provenance(
            packages={"vllm": "0.1"}, gpu=None, driver=None, host="h", python="3.11", git_commit="abc", git_dirty=False
        ),
        config={"llm_configs": []},
        campaign="c",
        client=_client(),
        timeline=StoredTimeline(
            segments={"seg_model_load_s": 1.5, "unattributed_s": 10.5},
            spans=(GanttSpan("seg_model_load_s", "model load", "model_load", 0.5, 2.0, 0.5),),
            ttft_s=12.0,
            t_send_epoch=1.0e9,
            startup_span_s=None,
            utc_offset_s=0.0,
            utc_offset_detected=True,
            segment_error_s={"seg_model_load_s": 0.5},
            milestones={"client_send": MilestoneTime(1.0e9, 0.0, "client")},
            notes=("a note",),
        ),
        answer=AnswerCheck(reference_run_id=None, matches_baseline=None),
        wall_s=40.0,
        node_state="cold",
        extra={"levers": ["compile_cache"]},
    )
    return ResultRow(**{**base, **kw})


def test_a_row_reads_back_as_the_same_row(tmp_path: Path) -> None:
    path = tmp_path / "results.jsonl"
    rows = [
        _row(),
        _row(run_id="r2", status=RunStatus.FAILED, ttft_s=None, phases={}, audit=None, client=None, timeline=None),
        _row(run_id="r3", audit=Audit(parse_error="ValueError: new wording"), timeline=None),
    ]
    for row in rows:
        append_row(path, row)
    back = load_rows(path)
    assert back == rows
    assert back[0].client.status is ClientStatus.OK and back[0].status is RunStatus.OK
    assert back[0].audit_passed is True and back[1].audit_passed is None


def test_the_json_shape_is_the_one_rows_always_had() -> None:
    d = json.loads(_row(audit=None, status="failed").to_json())
    # Statuses are bare strings; a run without a log has audit {}; client/timeline/wall_s/node_state sit in extra.
    assert d["status"] == "failed" and d["audit"] == {}
    assert set(d["extra"]) == {"client", "timeline", "wall_s", "node_state", "levers", "answer"}
    assert d["extra"]["client"]["status"] == "ok"
    assert "parse_error" not in json.loads(_row().to_json())["audit"]  # only a row whose parse failed has it


def test_every_committed_row_loads_and_round_trips() -> None:
    """The committed results (all schema version 1, some written before a field existed) load typed, and
    writing one back gives the row it was, with the fields it predates present as null."""
    lines = [line for line in COMMITTED.read_text().splitlines() if line.strip()]
    rows = load_rows(COMMITTED)
    assert len(rows) == len(lines) > 0
    for line, row in zip(lines, rows, strict=True):
        original = json.loads(line)
        original["provenance"] = {"boot_id": None, **original["provenance"]}
        if "client" in original["extra"]:
            original["extra"]["client"] = {"text": None, "warm_ttft_s": None, **original["extra"]["client"]}
        assert json.loads(row.to_json()) == original
    failed = [r for r in rows if r.status is RunStatus.FAILED]
    assert failed and all(r.audit is None and r.client is None for r in failed)


def test_a_v1_row_written_before_fields_existed_still_loads() -> None:
    (row,) = parse_rows(
        [
            '{"schema_version": 1, "run_id": "old", "model": "tiny", "experiment": "baseline", '
            '"repeat": 0, "status": "ok", "ttft_s": 5.0, "extra": {"client": {"status": "ok"}}}'
        ]
    )
    assert (row.campaign, row.audit, row.provenance, row.wall_s, row.node_state) == ("default", None, None, None, None)
    assert row.client.status is ClientStatus.OK and row.client.t_send_epoch is None


def test_a_row_of_a_newer_schema_stops_the_read_with_its_line() -> None:
    # This code cannot say what a newer row means: reading on would put a number of unknown meaning in a table.
    good = json.loads(_row().to_json())
    lines = [json.dumps(good), json.dumps({**good, "schema_version": SCHEMA_VERSION + 1})]
    with pytest.raises(SchemaError, match="schema_version") as err:
        parse_rows(lines, source="f.jsonl")
    assert str(err.value).startswith("f.jsonl:2:")


@pytest.mark.parametrize(
    ("change", "needle"),
    [
        ({"schema_version": 0}, "schema_version"),
        ({"schema_version": "1"}, "schema_version"),
        ({"status": "exploded"}, "status 'exploded'"),
        ({"run_id": None}, "run_id"),
        ({"surprise": 1}, "unknown key"),
        ({"audit": {"passed": True, "surprise": 1}}, "audit: unknown key"),
        ({"extra": {"wall_s": "long"}}, "could not convert"),
        ({"extra": {"timeline": {"spans": []}}}, "unknown key|timeline"),
    ],
)
def test_rows_this_code_cannot_read_are_skipped_and_named_by_their_line(change: dict, needle: str) -> None:
    good = json.loads(_row().to_json())
    lines = [json.dumps(good), json.dumps({**good, **change}), json.dumps(good)]
    skipped: list[str] = []
    rows = parse_rows(lines, source="f.jsonl", skipped=skipped)
    assert len(rows) == 2  # the good rows on both sides survive
    assert len(skipped) == 1 and skipped[0].startswith("f.jsonl:2: skipped")
    assert re.search(needle, skipped[0]), skipped[0]


def test_statuses_are_one_enum_per_concept_and_serialize_as_before() -> None:
    assert json.dumps(RunStatus.SERVE_FAILED) == '"serve_failed"'
    assert all(RunStatus(c.value) is c.run_status for c in ClientStatus)  # every client outcome is a run outcome
    assert {RunStatus.FAILED, RunStatus.LOG_ONLY}.isdisjoint({c.run_status for c in ClientStatus})
    with pytest.raises(SchemaError):
        _client(status="fine")
