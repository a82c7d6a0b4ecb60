"""A campaign run (coldstart/lab/campaign/) against a fake executor: no Ray, no GPU, no subprocess.

What runs on a GPU node is only what these commands say, so the tests pin the commands themselves; the
``--out`` folder (results, state, archive) is checked on disk."""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

import pytest

from coldstart import cli
from coldstart.lab.campaign import cli as campaign_cli
from coldstart.lab.campaign.executor import SubprocessExecutor
from coldstart.lab.campaign.outdir import OutDir
from coldstart.lab.campaign.plan import Plan, load_plan
from coldstart.lab.campaign.steps import Campaign
from coldstart.lab.import_runs import import_archive

PY = "py"
ROOT = Path(__file__).resolve().parents[1]
REPO_RESULTS = ROOT / "results" / "results.jsonl"
NAME = "2026-12-01-h200x1"


@dataclass
class Call:
    argv: list[str]
    env: dict[str, str]
    discard: str


@dataclass
class FakeBackground:
    argv: list[str]
    stopped: bool = False

    def stop(self) -> None:
        self.stopped = True


@dataclass
class FakeExecutor:
    """Records every command; ``on_run`` plays the command (its status, its effects: a matrix appends a row)."""

    on_run: Callable[[list[str]], int] = lambda argv: 0
    calls: list[Call] = field(default_factory=list)
    started: list[FakeBackground] = field(default_factory=list)
    said: list[str] = field(default_factory=list)
    dry_run: bool = False

    def run(self, argv: Sequence[str], *, env: Mapping[str, str], discard: str = "") -> int:
        self.calls.append(Call(list(argv), dict(env), discard))
        return self.on_run(list(argv))

    def start(self, argv: Sequence[str], *, env: Mapping[str, str], log_path: Path) -> FakeBackground:
        bg = FakeBackground(list(argv))
        self.started.append(bg)
        return bg

    def say(self, line: str) -> None:
        self.said.append(line)

    def commands(self) -> list[list[str]]:
        return [c.argv for c in self.calls]

    def matrices(self) -> list[list[str]]:
        return [c for c in self.commands() if c[1:4] == ["-m", "coldstart", "matrix"]]


def opt(argv: list[str], name: str) -> str:
    return argv[argv.index(name) + 1]


@pytest.fixture
def repo(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A checkout (the lab, and the working directory) with an empty results file; the lab's home under tmp_path."""
    root = tmp_path / "repo"
    (root / "results").mkdir(parents=True)
    (root / "results" / "results.jsonl").write_text("")
    monkeypatch.chdir(root)
    monkeypatch.setenv("COLDSTART_LAB", str(root))
    monkeypatch.setenv("COLDSTART_HOME", str(tmp_path / "home"))
    monkeypatch.delenv("COLDSTART_STORE", raising=False)
    monkeypatch.delenv("VLLM_CACHE_ROOT", raising=False)
    return tmp_path


def real_plan(name: str) -> Plan:
    return load_plan(ROOT / "campaigns" / f"{name}.yaml")


def plan_of(tmp_path: Path, text: str) -> Plan:
    path = tmp_path / "plan.yaml"
    path.write_text(text)
    return load_plan(path)


def make(
    ex: FakeExecutor, repo: Path, plan: Plan, *, clock: Callable[[], float] = lambda: 0.0, out: str = "out", **kw
) -> Campaign:
    return Campaign(
        plan=plan,
        name=NAME,
        executor=ex,
        out=OutDir(repo / out),
        python=PY,
        clock=clock,
        sleep=lambda s: None,
        environ={"COLDSTART_HOME": str(repo / "home"), "COLDSTART_LAB": str(repo / "repo")},
        **kw,
    )


def run(c: Campaign, *steps: str, **kw) -> int:
    return campaign_cli.run_campaign(c, list(steps) or list(c.plan.step_names), **kw)


# ---------------------------------------------------------------- what a step expands to


def test_fast_8b_prep_expands_to_its_commands(repo: Path):
    ex = FakeExecutor()
    c = make(ex, repo, real_plan("llama-3-8b-ladder"), repeats=3)
    c.engine_caches().mkdir(parents=True)  # the capture run left caches: publish them
    assert run(c, "fast-8b-prep") == 0
    ckpt = str(repo / "home" / "checkpoints" / "llama-3-8b")
    results = str(repo / "out" / "results.jsonl")
    assert ex.commands() == [
        [PY, "-m", "coldstart", "checkpoint", "llama-3-8b", "--no-progress"],
        [PY, "-m", "coldstart", "stage", "put", "llama-3-8b", "--from", ckpt],
        [PY, "-m", "coldstart", "matrix", "--results", results, "--repeats", "1", "--node-state", "warm",
         "--campaign", NAME, "--models", "llama-3-8b", "--experiments", "cc_trims", "--capture"],
        [PY, "-m", "coldstart", "serve", "llama-3-8b", "cc_trims", "--publish-compile-cache"],
    ]  # fmt: skip
    assert ex.calls[0].discard == "stdout"  # `checkpoint ... >/dev/null`, its errors still shown


def test_publish_without_engine_caches_shows_the_store_instead(repo: Path):
    ex = FakeExecutor()
    assert run(make(ex, repo, real_plan("llama-3-8b-ladder")), "fast-8b-prep") == 0
    assert ex.commands()[-1] == [PY, "-m", "coldstart", "compile-cache", "show", "--model", "llama-3-8b"]
    assert not any("--publish-compile-cache" in argv for argv in ex.commands())


def test_unconditional_publish_runs_even_without_engine_caches(repo: Path):
    ex = FakeExecutor()
    run(make(ex, repo, real_plan("tiny-smoke")), "tiny-cc")
    assert [PY, "-m", "coldstart", "serve", "tiny", "compile_cache", "--publish-compile-cache"] in ex.commands()
    capture, hit = ex.matrices()
    assert "--capture" in capture and "--capture" not in hit


@pytest.mark.parametrize(
    "plan,step,expected",
    [
        ("llama-3-8b-ladder", "fast-8b", [("warm", "fast", False)]),
        ("llama-3-8b-ladder", "fast-8b-cold", [("cold", "fast", False)]),
        ("llama-3-8b-x2", "tp2-sharded", [("cold", "runai_streamer_sharded", False)]),
        ("llama-3-8b-ladder", "ladder-8b", [("warm", "baseline", False), ("warm", "compile_cache", False)]),
        ("tiny-smoke", "tiny-mega-miss", [("cold", "compile_cache_mega", True)]),
        ("llama-3-70b-tp4", "70b-fast", [("warm", "cc_trims", True), ("warm", "fast", False)]),
    ],
)
def test_node_states_and_captures_reach_the_matrix_under_one_campaign_name(repo: Path, plan, step, expected):
    ex = FakeExecutor()
    run(make(ex, repo, real_plan(plan)), step)
    got = [(opt(m, "--node-state"), opt(m, "--experiments"), "--capture" in m) for m in ex.matrices()]
    assert got == expected
    assert {opt(m, "--campaign") for m in ex.matrices()} == {NAME}


@pytest.mark.parametrize("step", ["fast-tiny"])
def test_a_capture_run_is_one_run_whatever_repeats_says(repo: Path, step: str):
    ex = FakeExecutor()
    run(make(ex, repo, real_plan("tiny-smoke"), repeats=5), step)
    capture, measured = ex.matrices()
    assert opt(capture, "--repeats") == "1" and opt(measured, "--repeats") == "5"
    assert capture.count("--repeats") == 1  # one value, not a later one overriding an earlier


def test_the_plan_s_repeats_apply_unless_the_cli_s_do(repo: Path, tmp_path: Path):
    plan = plan_of(
        tmp_path,
        "repeats: 4\nsteps:\n  - name: a\n    actions:\n      - matrix: {models: [tiny], experiments: [baseline]}\n",
    )
    ex = FakeExecutor()
    run(make(ex, repo, plan), "a")
    ex2 = FakeExecutor()
    run(make(ex2, repo, plan, repeats=2), "a")  # finished with 4 repeats: nothing to do for 2
    ex3 = FakeExecutor()
    run(make(ex3, repo, plan, repeats=6), "a")  # more repeats than the step finished with: it runs again
    assert [opt(m, "--repeats") for m in ex.matrices() + ex2.matrices() + ex3.matrices()] == ["4", "6"]


def test_service_args_follow_a_double_dash(repo: Path):
    ex = FakeExecutor()
    run(make(ex, repo, real_plan("tiny-smoke")), "tiny-cc-mismatch")
    (m,) = ex.matrices()
    assert m[m.index("--") :] == ["--", "--max-model-len", "256"]


def test_s3_step_serves_s3_to_its_own_commands_only(repo: Path):
    ex = FakeExecutor()
    assert run(make(ex, repo, real_plan("tiny-smoke")), "tiny-s3", "tiny-cache") == 0
    (server,) = ex.started
    assert server.argv[1:3] == ["-m", "moto.server"] and server.stopped
    s3_matrix, later = ex.matrices()
    s3_call = next(c for c in ex.calls if c.argv == s3_matrix)
    assert s3_call.env["AWS_ENDPOINT_URL"] == "http://127.0.0.1:5555"
    assert s3_matrix[-3:] == ["--", "--store", "s3://lab/coldstart"]
    stage = next(c.argv for c in ex.calls if c.argv[3:5] == ["stage", "put"])
    assert stage[-2:] == ["--store", "s3://lab/coldstart"]
    assert "AWS_ENDPOINT_URL" not in next(c for c in ex.calls if c.argv == later).env


def test_the_store_and_the_plan_env_reach_every_command(repo: Path, tmp_path: Path):
    plan = plan_of(
        tmp_path,
        "store: /plan/store\nenv: {COLDSTART_HOME: /dev/shm/h}\nsteps:\n  - name: a\n    actions:\n"
        "      - checkpoint: {model: tiny}\n      - matrix: {models: [tiny], experiments: [baseline]}\n",
    )
    ex = FakeExecutor()
    run(make(ex, repo, plan), "a")
    assert {c.env["COLDSTART_STORE"] for c in ex.calls} == {"/plan/store"}
    assert {c.env["COLDSTART_HOME"] for c in ex.calls} == {"/dev/shm/h"}
    assert ex.commands()[1][-2:] == ["--from", "/dev/shm/h/checkpoints/tiny"]  # the plan's home, not ours
    ex2 = FakeExecutor()
    run(make(ex2, repo, plan, store="s3://other/p", out="out2"), "a")
    assert {c.env["COLDSTART_STORE"] for c in ex2.calls} == {"s3://other/p"}


def test_a_failed_checkpoint_stages_nothing_but_the_step_goes_on(repo: Path):
    ex = FakeExecutor(on_run=lambda argv: 1 if "checkpoint" in argv else 0)
    assert run(make(ex, repo, real_plan("llama-3-8b-ladder")), "baseline-8b") == 1
    assert not any(argv[3:5] == ["stage", "put"] for argv in ex.commands())
    assert len(ex.matrices()) == 1  # the matrix still runs (and its runs fail on their own)


def test_stale_ray_is_stopped_before_each_step_only_when_asked(repo: Path):
    ex = FakeExecutor()
    run(make(ex, repo, real_plan("llama-3-8b-ladder")), "fast-8b", "fast-8b-cold")

    def kind(argv: list[str]) -> str:
        return "ray stop" if argv[-2:] == ["stop", "--force"] else argv[0]

    assert not any(kind(argv) in ("ray stop", "pkill") for argv in ex.commands())
    ex2 = FakeExecutor()
    run(make(ex2, repo, real_plan("llama-3-8b-ladder"), stop_stale_ray=True, out="out2"), "fast-8b", "fast-8b-cold")
    assert [kind(argv) for argv in ex2.commands()] == ["ray stop", "pkill", PY, "ray stop", "pkill", PY]


# ---------------------------------------------------------------- one budget, failures, the archive


def test_the_budget_is_shared_across_actions_and_steps(repo: Path):
    now = [0.0]

    def matrix_takes_200_s(argv: list[str]) -> int:
        if "matrix" in argv:
            now[0] += 200.0
        return 0

    ex = FakeExecutor(on_run=matrix_takes_200_s)
    c = make(ex, repo, real_plan("tiny-smoke"), clock=lambda: now[0], deadline_s=560.0)
    assert run(c, "fast-tiny", "tiny-mega-hit", "tiny-cc-mismatch") == 0
    assert [opt(m, "--time-budget-s") for m in ex.matrices()] == ["560", "360", "160"]
    # The budget is spent: the last step does not start, and says so (a second run resumes it).
    assert any("not started: tiny-cc-mismatch" in line for line in ex.said)
    assert json.loads((repo / "out" / "campaign.json").read_text())["steps_done"] == {
        "fast-tiny": 1,
        "tiny-mega-hit": 1,
    }


def _row(run_id: str, campaign: str) -> str:
    """A real row of the repo's results, renamed: import-runs reads it as a ResultRow."""
    row = json.loads(REPO_RESULTS.read_text().splitlines()[0])
    row.update(run_id=run_id, campaign=campaign, log_path=f"experiment_terminal_output/tiny/baseline/{run_id}.log")
    return json.dumps(row) + "\n"


def _matrix_writing_rows(results: Path, fail_experiment: str | None = None) -> Callable[[list[str]], int]:
    """A matrix that appends one row (and its log) per command, under the campaign its argv names."""
    count = [0]

    def play(argv: list[str]) -> int:
        if "matrix" not in argv:
            return 0
        count[0] += 1
        run_id = f"20261201T000000Z-{count[0]:04d}"
        with open(results, "a") as f:
            f.write(_row(run_id, opt(argv, "--campaign")))
        log = Path(f"experiment_terminal_output/tiny/baseline/{run_id}.log")
        log.parent.mkdir(parents=True, exist_ok=True)
        log.write_text("a log\n")
        return 1 if opt(argv, "--experiments") == fail_experiment else 0

    return play


def test_a_failing_step_makes_the_exit_non_zero_and_later_steps_still_run_and_pack(repo: Path):
    out = repo / "out"
    Path("results/results.jsonl").write_text(_row("20261130T000000Z-home", "2026-11-30-h200x2"))
    ex = FakeExecutor(on_run=_matrix_writing_rows(out / "results.jsonl", fail_experiment="compile_cache_mega"))
    c = make(ex, repo, real_plan("tiny-smoke"))
    assert run(c, "tiny-mega-hit", "tiny-cc-mismatch", seed=Path("results/results.jsonl")) == 1
    assert len(ex.matrices()) == 2  # the failed step did not stop the campaign
    state = json.loads((out / "campaign.json").read_text())
    assert state == {"campaign": NAME, "plan": str(c.plan.path), "steps_done": {"tiny-cc-mismatch": 1}}
    # The archive holds this campaign's rows and logs, not the seed's, in the layout import-runs reads.
    report = import_archive(out / "runs.tgz", repo / "home-results.jsonl", dest_root=repo / "home-tree")
    assert sorted(report.imported) == ["20261201T000000Z-0001", "20261201T000000Z-0002"]
    assert report.missing_logs == [] and report.cut_short == []
    assert (repo / "home-tree/experiment_terminal_output/tiny/baseline/20261201T000000Z-0002.log").exists()


def test_each_step_repacks_the_archive(repo: Path):
    out = repo / "out"
    seen: list[int] = []
    play = _matrix_writing_rows(out / "results.jsonl")

    def record(argv: list[str]) -> int:
        if "matrix" in argv and (out / "runs.tgz").exists():
            seen.append(len(import_archive(out / "runs.tgz", repo / f"probe{len(seen)}.jsonl", repo / "t").imported))
        return play(argv)

    run(make(FakeExecutor(on_run=record), repo, real_plan("tiny-smoke")), "tiny-mega-hit", "tiny-cc-mismatch")
    assert seen == [1]  # the second step's matrix found the first step's row packed already


def test_a_second_run_skips_finished_steps_reruns_failed_ones_and_keeps_the_name(repo: Path):
    fails = [True]
    ex = FakeExecutor(on_run=lambda argv: 1 if "cc_trims" in argv and fails[0] else 0)
    assert run(make(ex, repo, real_plan("tiny-smoke")), "tiny-mega-hit", "fast-tiny") == 1
    fails[0] = False
    ex2 = FakeExecutor()
    c2 = make(ex2, repo, real_plan("tiny-smoke"))
    assert run(c2, "tiny-mega-hit", "fast-tiny") == 0
    assert [opt(m, "--experiments") for m in ex2.matrices()] == ["cc_trims", "fast"]  # only the failed step
    ex3 = FakeExecutor()
    assert run(make(ex3, repo, real_plan("tiny-smoke")), "tiny-mega-hit", "fast-tiny", redo=True) == 0
    assert len(ex3.matrices()) == 3  # --redo: every named step again (the matrix itself skips done runs)


def test_the_results_file_is_seeded_once(repo: Path):
    seed = Path("results/results.jsonl")
    seed.write_text(_row("20261130T000000Z-seed", "2026-11-30-h200x2"))
    run(make(FakeExecutor(), repo, real_plan("tiny-smoke")), "tiny-mega-hit", seed=seed)
    results = repo / "out" / "results.jsonl"
    assert results.read_text() == seed.read_text()
    results.write_text("")
    run(make(FakeExecutor(), repo, real_plan("tiny-smoke")), "tiny-cc-mismatch", seed=seed)
    assert results.read_text() == ""  # a resumed campaign keeps its own


# ---------------------------------------------------------------- the 70B on four GPUs: one copy on the disk


def _shard_plan(tmp_path: Path, built: Path) -> Plan:
    return plan_of(
        tmp_path,
        "steps:\n  - name: s\n    actions:\n      - checkpoint: {model: llama-3-70b, link: true}\n"
        f"      - shard: {{model: llama-3-70b, out: {built}}}\n"
        f"      - evict: {{model: llama-3-70b, built: {built}}}\n"
        f"      - stage_sharded: {{model: llama-3-70b, source: {built}}}\n",
    )


def test_70b_shard_builds_aside_evicts_then_stages_the_sharded_copy(repo: Path, tmp_path: Path):
    built = tmp_path / "shm" / "llama-3-70b-tp4"
    built.mkdir(parents=True)  # what a finished `shard` leaves
    ex = FakeExecutor()
    c = make(ex, repo, _shard_plan(tmp_path, built))
    assert run(c, "s") == 0
    cmds = ex.commands()
    assert cmds[1][-1] == "--link"  # staged by hard links
    shard = next(i for i, a in enumerate(cmds) if "shard" in a)
    evict = next(i for i, a in enumerate(cmds) if a[:2] == ["rm", "-rf"] and "checkpoints" in a[2])
    stage = next(i for i, a in enumerate(cmds) if "--tp" in a)
    assert shard < evict < stage
    assert cmds[shard][-4:] == ["--out", str(built), "--no-upload", "--no-progress"]
    home = repo / "home"
    assert cmds[evict][2:] == [
        str(home / "checkpoints" / "llama-3-70b"),
        str(home / "store" / "models" / "llama-3-70b"),
    ]
    assert cmds[stage][-4:] == ["--tp", "4", "--from", str(built)]
    assert cmds[stage + 1] == ["rm", "-rf", str(built)]


def test_70b_shard_that_built_nothing_keeps_the_checkpoint(repo: Path, tmp_path: Path):
    built = tmp_path / "shm" / "llama-3-70b-tp4"
    ex = FakeExecutor(on_run=lambda argv: 1 if "shard" in argv else 0)
    assert run(make(ex, repo, _shard_plan(tmp_path, built)), "s") == 1
    assert not any(a[:2] == ["rm", "-rf"] and "checkpoints" in a[2] for a in ex.commands())


# ---------------------------------------------------------------- the CLI


STEP = "steps:\n  - name: a\n    actions:\n      - "


def _args(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    campaign_cli.add_cli_args(parser)
    return parser.parse_args(list(argv))


def test_dry_run_runs_nothing_writes_nothing_and_prints_every_command(repo, monkeypatch, capsys):
    def refuse(*a, **k):
        raise AssertionError("a dry run started a process")

    monkeypatch.setattr(subprocess, "run", refuse)
    monkeypatch.setattr(subprocess, "Popen", refuse)
    monkeypatch.setattr(campaign_cli, "detect_gpu", lambda: "NVIDIA H200 x1")
    out = repo / "out"
    plan = str(ROOT / "campaigns" / "tiny-smoke.yaml")
    assert campaign_cli.main(_args(plan, "--dry-run", "--out", str(out), "--budget-s", "500")) == 0
    printed = capsys.readouterr().out
    assert not out.exists()
    assert printed.count("-m coldstart matrix") == 12  # every matrix of every step of the plan
    assert "--time-budget-s 500" in printed and "--capture" in printed and "moto.server" in printed
    assert "-h200x1 " in printed  # the campaign is named by date and this node's hardware
    assert printed.count("pack:") == len(load_plan(Path(plan)).steps)


@pytest.mark.parametrize(
    "text,needle",
    [
        (STEP + "matrix: {models: [tiny], experiments: [baseline], node_state: hot}\n",
         "step 'a', action 1 (matrix): field 'node_state': 'hot' is not one of cold, warm"),
        (STEP + "checkpoint: {modle: tiny}\n", "step 'a', action 1 (checkpoint): field 'modle': unknown"),
    ],
)  # fmt: skip
def test_a_bad_plan_runs_nothing_and_names_file_step_and_field(repo, monkeypatch, capsys, tmp_path, text, needle):
    monkeypatch.setattr(campaign_cli, "run_campaign", lambda *a, **k: pytest.fail("ran"))
    path = tmp_path / "bad.yaml"
    path.write_text(text)
    assert campaign_cli.main(_args(str(path))) == 2
    err = capsys.readouterr().err
    assert f"{path}: {needle}" in err and "nothing was run" in err


def test_unknown_step_runs_nothing(repo, monkeypatch, capsys):
    monkeypatch.setattr(campaign_cli, "run_campaign", lambda *a, **k: pytest.fail("ran"))
    assert campaign_cli.main(_args(str(ROOT / "campaigns/tiny-smoke.yaml"), "fast-tiny", "fast-9b")) == 2
    assert "no step fast-9b" in capsys.readouterr().err


def test_a_folder_of_another_campaign_or_machine_is_refused(repo, monkeypatch, capsys):
    monkeypatch.setattr(campaign_cli, "run_campaign", lambda *a, **k: 0)
    monkeypatch.setattr(campaign_cli, "detect_gpu", lambda: "NVIDIA H100 80GB HBM3 x1")
    out = OutDir(repo / "out")
    out.write_state(campaign_cli.CampaignState("2026-11-30-h200x2", "p"))
    plan = str(ROOT / "campaigns/tiny-smoke.yaml")
    assert campaign_cli.main(_args(plan, "--out", str(out.path))) == 2
    assert "of h200x2; this node is h100x1" in capsys.readouterr().err
    assert campaign_cli.main(_args(plan, "--out", str(out.path), "--campaign", "other")) == 2
    monkeypatch.setattr(campaign_cli, "detect_gpu", lambda: "NVIDIA H200 x2")
    assert campaign_cli.main(_args(plan, "--out", str(out.path))) == 0  # the same machine resumes it


def test_campaign_is_a_coldstart_tool():
    assert cli.TOOLS["campaign"][0] == "coldstart.lab.campaign.cli"


def test_subprocess_executor_statuses_env_and_background(tmp_path: Path, capfd):
    ex = SubprocessExecutor()
    assert ex.run([sys.executable, "-c", "import sys; sys.exit(3)"], env={}) == 3
    assert ex.run([sys.executable, "-c", "import os; print(os.environ['CS_X'])"], env={"CS_X": "seen"}) == 0
    assert ex.run([sys.executable, "-c", "print('hidden')"], env={}, discard="stdout") == 0
    assert ex.run(["/no/such/program"], env={}) == 127
    out = capfd.readouterr()
    assert "seen" in out.out and "hidden" not in out.out and "/no/such/program" in out.err
    bg = ex.start([sys.executable, "-c", "import time; print('up', flush=True); time.sleep(60)"], env={},
                  log_path=tmp_path / "bg" / "bg.log")  # fmt: skip
    bg.stop()
    assert bg.proc.returncode is not None  # type: ignore[attr-defined]


# ---------------------------------------------------------------- one name for a day's runs on one machine


def test_one_campaign_holds_cold_warm_capture_and_variant_runs_none_answering_another(tmp_path: Path):
    from coldstart.lab.matrix.plan import pending, plan

    results = tmp_path / "results.jsonl"
    row = json.loads(_row("20261201T000000Z-warm", NAME))
    row.update(model="tiny", experiment="compile_cache", repeat=0, status="ok")
    row["extra"].update(node_state="warm", capture=False, service_args=[])
    row["audit"].update(passed=True)
    results.write_text(json.dumps(row) + "\n")

    def todo(**kw) -> int:
        return len(pending(plan(["tiny"], ["compile_cache"], 1, NAME, **kw), results))

    assert todo(node_state="warm") == 0  # the row answers the warm run it was
    assert todo(node_state="cold") == 1
    assert todo(node_state="warm", capture=True) == 1
    assert todo(node_state="warm", service_args=["--max-model-len", "256"]) == 1


def test_the_matrix_names_a_campaign_by_date_and_hardware_unless_told(tmp_path, monkeypatch, capsys):
    from coldstart.lab.matrix import cli as matrix_cli

    monkeypatch.setattr(matrix_cli, "nvidia_gpus", lambda: ("NVIDIA H200 x2", "580"))
    parser = argparse.ArgumentParser()
    matrix_cli.add_cli_args(parser)
    base = ["--models", "tiny", "--repeats", "1", "--results", str(tmp_path / "r.jsonl"), "--dry-run"]
    assert matrix_cli.main(parser.parse_args(base)) == 0
    (line, _) = capsys.readouterr().out.splitlines()
    assert line.split()[1] == f"{datetime.now(timezone.utc):%Y-%m-%d}-h200x2"
    assert matrix_cli.main(parser.parse_args([*base, "--campaign", "demo"])) == 0
    assert capsys.readouterr().out.split()[1] == "demo"
