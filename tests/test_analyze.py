"""Analysis: logs and result rows -> tables and graphs. Graphs are checked by what the Figure holds (bars,
legend entries, rows), not by pixels."""

from __future__ import annotations

import argparse
import dataclasses
import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

pd = pytest.importorskip("pandas")
pytest.importorskip("matplotlib")

from coldstart.analysis import cli, collect, plots, tables  # noqa: E402
from coldstart.analysis.parse import PHASE_COLUMNS  # noqa: E402
from coldstart.analysis.results import (  # noqa: E402
    Audit,
    ClientResult,
    Provenance,
    ResultRow,
    RunStatus,
    append_row,
)
from coldstart.analysis.timeline import CATEGORY, SEGMENT_NAMES, UNATTRIBUTED  # noqa: E402
from coldstart.cli import SUBTOOLS  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
RUNS = REPO / "experiment_terminal_output"
ANCESTOR_DIR = REPO.parent / "shared" / "fixtures" / "ancestor-logs"
H100_TINY = RUNS / "tiny" / "baseline" / "20261122T190327Z-2c8f"
CPU_TINY = RUNS / "tiny" / "baseline" / "20261122T185844Z-5722"
QWEN_FAILED = RUNS / "qwen-3-0.6b" / "baseline" / "20261122T190806Z-c961"


def _copy_run(stem: Path, root: Path, client: bool = True) -> None:
    dest = root / stem.parent.parent.name / stem.parent.name
    dest.mkdir(parents=True, exist_ok=True)
    shutil.copy(stem.with_suffix(".log"), dest)
    if client:
        shutil.copy(stem.with_suffix(".client.json"), dest)


@pytest.fixture
def run_tree(tmp_path: Path) -> Path:
    """A copy of three of the project's runs in the ``<model>/<experiment>/<run_id>.log`` layout, plus
    entries collect() must pass over."""
    root = tmp_path / "logs"
    for stem in (H100_TINY, CPU_TINY, QWEN_FAILED):
        _copy_run(stem, root)
    (root / "_campaign").mkdir()
    (root / "_campaign" / "notes.txt").write_text("INFO 11-22 19:00:00 [x.py:1] not a run\n")
    (root / "tiny" / "notes.md").write_text("# not a log\n")
    return root


# ---------------------------------------------------------------------------------------------------------
# Collect


@pytest.mark.parametrize(
    ("name", "model", "experiment"),
    [
        ("llama70b-s3-runai-sharded.txt", "llama-3-70b", "runai_streamer_sharded"),
        ("llama70b-s3-runai.txt", "llama-3-70b", "runai_streamer"),
        ("llama70b-base.txt", "llama-3-70b", "baseline"),
        ("llama70B-compile-cache.txt", "llama-3-70b", "compile_cache"),
        ("qwen235B-all.txt", "qwen-3-235b", "all"),
        ("tiny-baseline.log", "tiny", "baseline"),
        ("qwen-3-0.6b_compile_cache.log", "qwen-3-0.6b", "compile_cache"),
        ("llama70B-compile-cache-mega.txt", "llama-3-70b", "compile_cache_mega"),
        ("tiny_compile_cache_mega.log", "tiny", "compile_cache_mega"),
        ("mystery.txt", "mystery", "unknown"),
    ],
)
def test_infer_model_experiment_from_file_names(name, model, experiment):
    assert collect.infer_model_experiment(name) == (model, experiment)


def test_experiments_sort_in_registry_order_with_unknown_ones_last():
    names = ["all", "mystery", "compile_cache_mega", "baseline", "compile_cache"]
    assert sorted(names, key=tables.experiment_order) == [
        "baseline",
        "compile_cache",
        "compile_cache_mega",
        "all",
        "mystery",
    ]


def _by_id(runs) -> dict:
    return {r.row.run_id: r.row for r in runs}


def test_collect_walks_a_run_tree_and_reads_the_client_sidecars(run_tree):
    found = collect.collect([run_tree])
    assert {r.source for r in found} == {collect.Source.LOG}
    rows = _by_id(found)
    assert set(rows) == {H100_TINY.name, CPU_TINY.name, QWEN_FAILED.name}
    h100 = rows[H100_TINY.name]
    assert (h100.model, h100.experiment, h100.device, h100.status) == ("tiny", "baseline", "cuda", RunStatus.OK)
    assert h100.ttft_s == pytest.approx(183.241, abs=1e-3)
    assert h100.phases["model_load_s"] == pytest.approx(1.740497)
    assert h100.phases["seg_engine_config_s"] == pytest.approx(26.2297, abs=1e-3)
    assert rows[CPU_TINY.name].device == "cpu"
    assert rows[QWEN_FAILED.name].status is RunStatus.NO_TOKEN and rows[QWEN_FAILED.name].ttft_s is None
    assert json.loads(h100.to_json())["status"] == "ok"  # a row built from a log is a results.jsonl row


def test_collect_without_a_sidecar_uses_a_client_from_the_results(run_tree):
    (run_tree / "tiny" / "baseline" / f"{H100_TINY.name}.client.json").unlink()
    bare = _by_id(collect.collect([run_tree]))[H100_TINY.name]
    assert bare.status == collect.LOG_ONLY and bare.ttft_s is None
    client = ClientResult.from_dict(json.loads(H100_TINY.with_suffix(".client.json").read_text()))
    rows = _by_id(collect.collect([run_tree], clients={H100_TINY.name: client}))
    assert rows[H100_TINY.name].ttft_s == pytest.approx(client.ttft_s)


def test_collect_flat_folder_of_captures(tmp_path):
    flat = tmp_path / "captures"
    flat.mkdir()
    shutil.copy(H100_TINY.with_suffix(".log"), flat / "llama70b-s3-runai-sharded.txt")
    (run,) = collect.collect([flat])
    assert (run.row.model, run.row.experiment, run.source) == ("llama-3-70b", "runai_streamer_sharded", "capture")
    assert run.row.ttft_s is None  # no client beside a capture


@pytest.mark.skipif(not ANCESTOR_DIR.is_dir(), reason="ancestor logs not available")
def test_collect_ancestor_logs():
    rows = {(r.row.model, r.row.experiment): r for r in collect.collect([ANCESTOR_DIR])}
    assert set(rows) == {
        ("llama-3-70b", e) for e in ("baseline", "runai_streamer", "runai_streamer_sharded", "compile_cache", "all")
    } | {("qwen-3-235b", e) for e in ("baseline", "runai_streamer_sharded", "compile_cache", "all")}
    base = rows[("llama-3-70b", "baseline")].row
    assert base.phases["model_load_s"] == pytest.approx(213.54, abs=0.01)  # the slowest of the 4 ranks
    assert base.ttft_s is None and base.status == collect.LOG_ONLY
    runs = tables.run_table(list(rows.values()))
    llama = runs[(runs["model"] == "llama-3-70b") & (runs["experiment"] == "baseline")].iloc[0]
    # A capture's total is its log span; the categories fill it exactly, the rest being unattributed.
    assert llama["total_kind"] == "log_span"
    assert llama["cat_weights_download_s"] == pytest.approx(196.465363)
    assert llama["cat_model_load_s"] == pytest.approx(213.541107 - 196.465363)
    assert sum(llama[c] for c in tables.CATEGORY_COLUMNS if llama[c] == llama[c]) == pytest.approx(llama["total_s"])


def _summary_records(markdown: str) -> list[dict[str, str]]:
    """summary.md's rows as {header: cell}."""
    lines = markdown.splitlines()
    head = [c.strip() for c in lines[0].strip("|").split("|")]
    return [dict(zip(head, (c.strip() for c in line.strip("|").split("|")), strict=True)) for line in lines[2:]]


@pytest.mark.skipif(not ANCESTOR_DIR.is_dir(), reason="ancestor logs not available (../shared/fixtures/ancestor-logs)")
def test_the_ancestors_published_logs_are_labelled_theirs_not_an_unknown_gpu_of_ours(run_tree):
    found = collect.collect([ANCESTOR_DIR, run_tree])
    runs = tables.run_table(found)
    theirs = runs[runs["model"].isin(["llama-3-70b", "qwen-3-235b"])]
    assert len(theirs) == 9 and set(theirs["source"]) == {"ancestor (published logs)"}
    assert "ancestor (published logs)" not in set(runs.loc[runs["model"] == "tiny", "source"])
    records = _summary_records(tables.summary_markdown(tables.median_table(runs)))
    ancestor = [r for r in records if r["model"] in ("llama-3-70b", "qwen-3-235b")]
    assert len(ancestor) == 9
    # Their host and their name, never "GPU" and node "?" as if they were a log of ours on an unknown card.
    assert {(r["source"], r["hardware"], r["node"]) for r in ancestor} == {("ancestor (published logs)", "8×H100", "—")}
    ours = [r for r in records if r["model"] == "tiny"]
    assert ours and {r["source"] for r in ours} == {"ours"}


def test_merge_prefers_the_reparsed_log_but_keeps_what_only_the_result_row_knows(run_tree, tmp_path):
    results = tmp_path / "results.jsonl"
    append_row(
        results, _result_row(H100_TINY.name, "tiny", "baseline", 183.241, repeat=2, phases={"model_load_s": 999.0})
    )
    merged = {r.row.run_id: r for r in collect.merge_rows(collect.collect([run_tree]), collect.load_results(results))}
    row = merged[H100_TINY.name].row
    assert row.repeat == 2 and row.campaign == "test"
    assert row.phases["model_load_s"] == pytest.approx(1.740497)  # from the log, not the stale row
    assert row.timeline is not None and row.timeline.ttft_s == pytest.approx(183.241, abs=1e-3)
    assert merged[H100_TINY.name].source == "results+log"
    assert len(merged) == 3


# ---------------------------------------------------------------------------------------------------------
# A small results file built here, and every graph from it

SEGS = (
    "seg_replica_actor_start_s",
    "seg_engine_process_spawn_s",
    "seg_model_load_s",
    "seg_torch_compile_s",
    "seg_first_token_s",
)


def _phases(ttft: float) -> dict[str, float | None]:
    phases: dict[str, float | None] = {c: None for c in (*PHASE_COLUMNS, *SEGMENT_NAMES)}
    parts = {
        "seg_replica_actor_start_s": 20.0,
        "seg_engine_process_spawn_s": 15.0,
        "seg_model_load_s": 5.0,
        "seg_first_token_s": 1.0,
    }
    phases.update(parts, seg_torch_compile_s=ttft - sum(parts.values()), model_load_s=4.5)
    phases[UNATTRIBUTED] = 0.0
    return phases


def _result_row(
    run_id: str,
    model: str,
    experiment: str,
    ttft: float | None,
    *,
    repeat: int = 0,
    status: str = "ok",
    phases: dict | None = None,
    cache_hit: bool | None = None,
) -> ResultRow:
    hit = (experiment == "compile_cache") if cache_hit is None else cache_hit
    return ResultRow(
        run_id=run_id,
        model=model,
        experiment=experiment,
        repeat=repeat,
        status=status,
        ttft_s=ttft,
        phases=phases if phases is not None else (_phases(ttft) if ttft is not None else {}),
        audit=Audit(compile_cache_hit=hit),
        log_path=None,
        provenance=None,
        config={},
        campaign="test",
        device="cuda",
        client=ClientResult.from_dict(
            {"status": status, "ttft_s": ttft, "t_send_epoch": 1.0e9, "total_s": ttft or 50.0}
        ),
    )


@pytest.fixture
def results_file(tmp_path: Path) -> Path:
    path = tmp_path / "results" / "results.jsonl"
    for i, ttft in enumerate((100.0, 110.0, 130.0)):
        append_row(path, _result_row(f"m1-b-{i}", "m1", "baseline", ttft, repeat=i))
    for i, ttft in enumerate((80.0, 90.0)):
        append_row(path, _result_row(f"m1-c-{i}", "m1", "compile_cache", ttft, repeat=i))
    # A cache run that compiled anyway (restore MISMATCH): flagged, never averaged into compile_cache.
    append_row(path, _result_row("m1-c-2", "m1", "compile_cache", 20.0, repeat=2, cache_hit=False))
    append_row(path, _result_row("m2-b-0", "m2", "baseline", 200.0))
    append_row(path, _result_row("m2-b-1", "m2", "baseline", None, repeat=1, status="timeout"))
    return path


@pytest.fixture
def runs(results_file: Path) -> pd.DataFrame:
    return tables.run_table(collect.load_results(results_file))


def test_median_table(runs):
    med = tables.median_table(runs).set_index(["model", "experiment"])
    assert med.loc[("m1", "baseline"), "n"] == 3
    assert med.loc[("m1", "baseline"), "total_s"] == pytest.approx(110.0)
    assert med.loc[("m1", "compile_cache"), "total_s"] == pytest.approx(85.0)
    assert med.loc[("m2", "baseline"), "n"] == 1  # the timeout is not a cold start of 0 s, nor of anything
    assert med.loc[("m1", "baseline"), "cat_ray_serve_s"] == pytest.approx(21.0)  # actor start + first token
    assert med.loc[("m1", "compile_cache"), "n"] == 2
    assert med.loc[("m1", "baseline"), ["total_min_s", "total_max_s"]].tolist() == [100.0, 130.0]
    excluded = tables.excluded_runs(runs)
    assert excluded == [
        tables.ExcludedRun("m1", "compile_cache", "m1-c-2", RunStatus.OK, failed_audit=True),
        tables.ExcludedRun("m2", "baseline", "m2-b-1", RunStatus.TIMEOUT, failed_audit=False),
    ]
    # How the graphs name them, unchanged:
    assert [str(e) for e in excluded] == [
        "m1 compile_cache m1-c-2 (ok, failed cache audit)",
        "m2 baseline m2-b-1 (timeout)",
    ]


@pytest.mark.parametrize(
    ("device", "gpu", "kind"),
    [
        ("cuda", "NVIDIA H100 80GB HBM3 x1", "cuda:H100 x1"),
        ("cuda", "NVIDIA H200 x2", "cuda:H200 x2"),
        ("cuda", "NVIDIA L40S", "cuda:L40S"),
        ("cuda", "Some Future Accelerator x8", "cuda:Some Future Accelerator x8"),
        ("cuda", None, "cuda"),
        ("cpu", None, "cpu"),
    ],
)
def test_device_kind_names_the_gpu_the_row_ran_on(device, gpu, kind):
    assert tables.device_kind(device, gpu) == kind


def test_medians_never_mix_gpu_kinds(tmp_path):
    path = tmp_path / "results.jsonl"
    for i, (ttft, gpu) in enumerate(
        ((100.0, "NVIDIA H100 80GB HBM3 x1"), (110.0, "NVIDIA H100 80GB HBM3 x1"), (60.0, "NVIDIA H200 x1"))
    ):
        row = _result_row(f"r{i}", "m1", "baseline", ttft, repeat=i)
        append_row(path, dataclasses.replace(row, provenance=Provenance.from_dict({"gpu": gpu})))
    med = tables.median_table(tables.run_table(collect.load_results(path))).set_index("device")
    assert med.loc["cuda:H100 x1", ["n", "total_s"]].tolist() == [2, 105.0]
    assert med.loc["cuda:H200 x1", ["n", "total_s"]].tolist() == [1, 60.0]
    assert "| m1 | baseline | ours | H200 x1 | cold | 1 | 60.0 |" in tables.summary_markdown(med.reset_index())
    # One experiment, one color; the two kinds are written on their bars.
    ax = plots.render_comparison(tables.comparison_data(med.reset_index())).axes[0]
    assert len({p.get_facecolor() for p in ax.patches}) == 1
    assert sorted(t.get_text() for t in ax.texts) == ["105\nH100 x1", "60\nH200 x1"]
    assert [t.get_text() for t in ax.get_xticklabels()] == ["m1"]


def test_summary_markdown_gives_the_range_where_there_are_several_runs(runs):
    lines = tables.summary_markdown(tables.median_table(runs)).splitlines()
    assert lines[0].startswith("| model | experiment | source | hardware | node | n | total s, median (min–max) |")
    by_pair = {tuple(c.strip() for c in line.strip("|").split("|")[:2]): line for line in lines[2:]}
    assert "| 3 | 110.0 (100.0–130.0) |" in by_pair[("m1", "baseline")]
    assert "| 2 | 85.0 (80.0–90.0) |" in by_pair[("m1", "compile_cache")]
    assert "| 1 | 200.0 |" in by_pair[("m2", "baseline")]
    assert len(lines) == 2 + 3


def test_category_seconds_from_segments_sum_to_ttft():
    cats = tables.category_seconds(_phases(100.0))
    assert sum(v for v in cats.values() if v is not None) == pytest.approx(100.0)
    assert cats["torch_compile"] == pytest.approx(59.0)
    assert cats["cuda_graphs"] is None  # not measured: None, not 0


def test_stacked_bars_one_per_experiment_one_stack_per_legend_entry(runs):
    data = tables.stacked_data(tables.median_table(runs), "m1")
    assert list(data.index) == ["baseline", "compile_cache"]
    fig = plots.render_stacked(data, "m1", tables.excluded_runs(runs)[:1])
    assert any("m1-c-2" in t.get_text() for t in fig.texts)  # the flagged run is named, not hidden
    ax = fig.axes[0]
    labels = [t.get_text() for t in ax.get_legend().get_texts()]
    # Present categories: Ray/Serve (actor start + first token), engine start, model load, torch.compile,
    # unattributed (0 s everywhere, so left out).
    assert sorted(labels) == sorted(
        CATEGORY[c].label for c in ("ray_serve", "engine_startup", "model_load", "torch_compile")
    )
    assert len(ax.containers) == len(labels)
    assert all(len(c.patches) == 2 for c in ax.containers)  # one bar per experiment
    # Each bar's stack reaches its median TTFT (categories were taken from runs that each sum to TTFT).
    tops = [max(p.get_y() + p.get_height() for c in ax.containers for p in [c.patches[i]]) for i in range(2)]
    assert tops == pytest.approx([110.0, 85.0])
    assert any("n=3 (100–130)" in t.get_text() for t in ax.texts)


def test_comparison_one_bar_per_model_and_experiment(runs):
    data = tables.comparison_data(tables.median_table(runs))
    fig = plots.render_comparison(data, tables.excluded_runs(runs))
    ax = fig.axes[0]
    assert len(ax.patches) == 3  # m1 baseline, m1 compile_cache, m2 baseline
    assert sorted(p.get_height() for p in ax.patches) == pytest.approx([85.0, 110.0, 200.0])
    assert [t.get_text() for t in ax.get_xticklabels()] == ["m1", "m2"]
    legend = [t.get_text() for t in ax.get_legend().get_texts()]
    assert legend[:2] == ["baseline", "compile_cache"]
    assert any("m2-b-1 (timeout)" in t.get_text() for t in fig.texts)
    # Whiskers min..max where a cell has several runs (m1 baseline 100-130, m1 compile_cache 80-90), none for n=1.
    spans = sorted(
        tuple(sorted((seg[0][1], seg[1][1])))
        for c in ax.collections
        for seg in c.get_segments()
        if seg[0][0] == seg[1][0]
    )
    assert spans == [pytest.approx((80.0, 90.0)), pytest.approx((100.0, 130.0))]


def test_ttft_spread_median_whiskers_and_n(runs):
    data = tables.ttft_spread(runs)
    row = data[(data["model"] == "m1") & (data["experiment"] == "baseline")].iloc[0]
    assert (row["n"], row["median_s"], row["min_s"], row["max_s"]) == (3, 110.0, 100.0, 130.0)
    fig = plots.render_ttft_spread(data)
    ax = fig.axes[0]
    texts = [t.get_text() for t in ax.texts]
    assert sorted(t.split("\n")[0] for t in texts) == ["n=1", "n=2", "n=3"]
    assert len(ax.get_xticklabels()) == 3


def test_gantt_from_a_result_row_without_stored_spans_lays_segments_end_to_end():
    data = tables.gantt_data(_result_row("r", "m1", "baseline", 100.0))
    assert list(data["name"]) == [*SEGS, UNATTRIBUTED]  # chain order; the 0 s unattributed (position unknown) last
    assert data["end_s"].max() == pytest.approx(100.0)
    fig = plots.render_gantt(data, "r", 100.0, "first token")
    ax = fig.axes[0]
    assert len(ax.collections) == len(data)  # one bar (row) per segment present
    assert [t.get_text() for t in ax.get_yticklabels()] == list(data["label"])


def test_gantt_of_a_real_run_has_one_bar_per_segment_present(run_tree):
    rows = _by_id(collect.collect([run_tree]))
    h100 = tables.gantt_data(rows[H100_TINY.name])
    assert len(h100) == 16  # every segment but the compile-cache restore (a baseline run has none)
    fig = plots.render_gantt(h100, "h100", 183.24)
    assert len(fig.axes[0].collections) == 16
    cpu = tables.gantt_data(rows[CPU_TINY.name])
    # No CUDA graphs on CPU: those two segments are absent and one unattributed bar covers their time.
    assert "seg_cuda_graph_s" not in set(cpu["name"]) and "seg_warmup_s" not in set(cpu["name"])
    assert list(cpu["name"]).count(UNATTRIBUTED) == 1
    assert len(plots.render_gantt(cpu, "cpu").axes[0].collections) == 15


def test_write_tables_csv_long_and_parquet(runs, tmp_path):
    written, skipped = tables.write_tables(runs, tables.long_table(runs), tmp_path / "tables")
    names = {p.name for p in written}
    assert {"phases.csv", "phases_long.csv", "phases.parquet", "phases_long.parquet"} <= names
    assert skipped == []
    wide = pd.read_csv(tmp_path / "tables" / "phases.csv")
    assert len(wide) == 8 and wide["run_id"].is_unique
    long = pd.read_csv(tmp_path / "tables" / "phases_long.csv")
    assert list(long.columns) == ["run_id", "model", "experiment", "device", "phase", "seconds"]
    # Tidy: an unobserved phase has no row (never a 0).
    assert not ((long["run_id"] == "m1-b-0") & (long["phase"] == "cuda_graph_s")).any()
    assert long[(long["run_id"] == "m1-b-0") & (long["phase"] == "model_load_s")]["seconds"].item() == 4.5


def test_write_tables_without_pyarrow_skips_parquet_and_says_so(runs, tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "pyarrow", None)  # import pyarrow -> ImportError
    written, skipped = tables.write_tables(runs, tables.long_table(runs), tmp_path / "tables")
    assert {p.name for p in written} == {"phases.csv", "phases_long.csv"}
    assert skipped and "pyarrow" in skipped[0]


def test_cli_writes_tables_and_every_graph(run_tree, results_file, tmp_path, capsys):
    parser = argparse.ArgumentParser()
    cli.add_cli_args(parser)
    graphs, tables_dir = tmp_path / "graphs", tmp_path / "tables"
    args = parser.parse_args(
        [
            "--logs",
            str(run_tree),
            "--results",
            str(results_file),
            "--out-graphs",
            str(graphs),
            "--out-tables",
            str(tables_dir),
        ]
    )
    assert cli.main(args) == 0
    out = capsys.readouterr().out
    assert "m1" in out and "tiny" in out and "median seconds" in out
    pngs = {p.stem for p in graphs.glob("*.png")}
    assert {
        "phases_m1",
        "phases_m2",
        "phases_tiny",
        "comparison",
        "ttft_spread",
        f"timeline_tiny_{H100_TINY.name}",
        f"timeline_qwen-3-0.6b_{QWEN_FAILED.name}",
    } <= pngs
    assert {p.stem for p in graphs.glob("*.svg")} == pngs
    assert len(pd.read_csv(tables_dir / "phases.csv")) == 8 + 3


def test_cli_with_nothing_to_analyze_fails(tmp_path, capsys):
    parser = argparse.ArgumentParser()
    cli.add_cli_args(parser)
    args = parser.parse_args(
        [
            "--logs",
            str(tmp_path / "none"),
            "--results",
            str(tmp_path / "none.jsonl"),
            "--out-graphs",
            str(tmp_path / "g"),
            "--out-tables",
            str(tmp_path / "t"),
        ]
    )
    assert cli.main(args) == 1
    assert "no runs found" in capsys.readouterr().err


def test_python_m_analysis_is_the_analyze_tool():
    proc = subprocess.run(
        [sys.executable, "-m", "analysis", "--help"], cwd=REPO, capture_output=True, text=True, check=False
    )
    assert proc.returncode == 0, proc.stderr
    assert "--out-graphs" in proc.stdout and "--results" in proc.stdout


@pytest.mark.parametrize("word", sorted(SUBTOOLS["analysis"]))
def test_python_m_analysis_reaches_every_subcommand_of_the_one_table(word: str) -> None:
    _, help_text = SUBTOOLS["analysis"][word]
    proc = subprocess.run(
        [sys.executable, "-m", "analysis", word, "--help"], cwd=REPO, capture_output=True, text=True, check=False
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith(f"usage: python -m analysis {word} ")
    # The table's own description (argparse wraps it), and not the tables tool's options.
    assert help_text in " ".join(proc.stdout.split())
    assert "--out-graphs" not in proc.stdout


def test_saved_graphs_are_byte_identical_when_redrawn(tmp_path):
    # Regenerating graphs must not rewrite unchanged files (timestamps, random SVG ids) in every commit.
    from matplotlib.figure import Figure

    from coldstart.analysis.plots import save_figure

    def draw(out):
        fig = Figure()
        fig.add_subplot().plot([0, 1], [1, 0])
        return save_figure(fig, out, "same")

    first, second = draw(tmp_path / "a"), draw(tmp_path / "b")
    for a, b in zip(first, second, strict=True):
        assert a.read_bytes() == b.read_bytes(), a.name


def test_warm_and_cold_node_runs_never_share_a_median_and_older_rows_count_as_cold(tmp_path):
    path = tmp_path / "results.jsonl"
    for i, (ttft, node) in enumerate(((40.0, "warm"), (44.0, "warm"), (50.0, "cold"), (60.0, None))):
        row = _result_row(f"r{i}", "m1", "fast", ttft, repeat=i, cache_hit=True)
        append_row(path, dataclasses.replace(row, node_state=node))  # None: a row from before the field
    med = tables.median_table(tables.run_table(collect.load_results(path))).set_index("node_state")
    assert med.loc["warm", ["n", "total_s"]].tolist() == [2, 42.0]
    assert med.loc["cold", ["n", "total_s"]].tolist() == [2, 55.0]


def test_ladder_orders_rungs_bottom_to_top_and_names_the_lever_each_adds(tmp_path):
    path = tmp_path / "results.jsonl"
    for i, (exp, ttft) in enumerate(
        (("fast", 40.0), ("baseline", 190.0), ("cc_prestart", 60.0), ("compile_cache", 140.0))
    ):
        row = _result_row(f"r{i}", "m1", exp, ttft, cache_hit=exp != "baseline")
        append_row(path, dataclasses.replace(row, node_state="warm"))
    medians = tables.median_table(tables.run_table(collect.load_results(path)))
    assert tables.ladders(medians) == [("m1", "cuda", "warm")]
    data = tables.ladder_data(medians, "m1", "cuda", "warm")
    assert list(data.index) == [
        "baseline",
        "compile_cache\n+compile_cache",
        "cc_prestart\n+prestart_workers",
        "fast\n+engine_core_forkserver",
    ]
    assert data["total_s"].tolist() == [190.0, 140.0, 60.0, 40.0]


@pytest.fixture
def repo_with_two_sources(tmp_path: Path, monkeypatch) -> Path:
    """A checkout (the lab, and the working directory the --logs are typed from) with its own run tree and a
    capture folder beside it, as ``make demo`` sees the project's ``experiment_terminal_output`` and
    ``../shared/fixtures/ancestor-logs``."""
    repo = tmp_path / "repo"
    _copy_run(H100_TINY, repo / "experiment_terminal_output")
    captures = tmp_path / "shared" / "captures"
    captures.mkdir(parents=True)
    shutil.copy(H100_TINY.with_suffix(".log"), captures / "llama70b-s3-runai-sharded.txt")
    monkeypatch.chdir(repo)
    monkeypatch.setenv("COLDSTART_LAB", str(repo))
    return repo


def _analyze(*argv: str) -> int:
    from coldstart.cli import run_tool

    return run_tool("analyze", ["--out-graphs", "graphs", *argv])


def test_cli_without_logs_uses_the_sources_the_summary_was_made_from(repo_with_two_sources, capsys):
    repo = repo_with_two_sources
    assert _analyze("--logs", "experiment_terminal_output", "../shared/captures") == 0
    first = (repo / "results" / "summary.md").read_text()
    assert "llama-3-70b" in first and "| tiny |" in first
    record = json.loads((repo / "results" / collect.SOURCES_FILE).read_text())
    assert record == {"logs": ["experiment_terminal_output", "../shared/captures"]}  # relative, as typed
    capsys.readouterr()

    # `make demo`: no --logs. The capture's rows must not vanish from the summary.
    assert _analyze() == 0
    assert (repo / "results" / "summary.md").read_text() == first
    assert "recorded in" in capsys.readouterr().out

    # A recorded source that is gone: named, the rest analysed, and the record kept for when it comes back.
    shutil.rmtree(repo.parent / "shared")
    assert _analyze() == 0
    err = capsys.readouterr().err
    assert "../shared/captures" in err and "does not exist" in err and "recorded in" in err
    assert "llama-3-70b" not in (repo / "results" / "summary.md").read_text()
    assert json.loads((repo / "results" / collect.SOURCES_FILE).read_text()) == record

    # --logs given explicitly replaces the record.
    assert _analyze("--logs", "experiment_terminal_output") == 0
    assert json.loads((repo / "results" / collect.SOURCES_FILE).read_text()) == {"logs": ["experiment_terminal_output"]}


def test_cli_with_an_unreadable_source_record_fails_and_writes_nothing(repo_with_two_sources, capsys):
    results = repo_with_two_sources / "results"
    results.mkdir()
    (results / collect.SOURCES_FILE).write_text('{"logs": "experiment_terminal_output"}')
    (results / "summary.md").write_text("the last good summary\n")
    assert _analyze() == 2
    assert collect.SOURCES_FILE in capsys.readouterr().err
    assert (results / "summary.md").read_text() == "the last good summary\n"
    assert not (repo_with_two_sources / "graphs").exists()
