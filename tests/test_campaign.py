"""The campaign plan (coldstart/lab/campaign.py) against a fake executor: no Ray, no GPU, no subprocess.

What runs on the lent machine is only what these commands say, so the tests pin the commands themselves."""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import tarfile
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from coldstart import cli
from coldstart.compile_cache.archive import CacheManifest
from coldstart.compile_cache.common import MANIFEST_NAME
from coldstart.lab import campaign as cmp
from coldstart.lab.campaign import STEPS, Campaign, Checkpoint, Matrix, Publish, run_campaign, step_problems
from coldstart.lab.import_runs import import_archive
from coldstart.registry import EXPERIMENTS, MODELS

PY = "py"
REPO_RESULTS = Path(__file__).resolve().parents[1] / "results" / "results.jsonl"


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
        """What ran, less the stale-Ray cleanup before each step."""
        return [c.argv for c in self.calls if c.argv[0] not in ("ray", "pkill")]

    def matrices(self) -> list[list[str]]:
        return [c for c in self.commands() if c[1:4] == ["-m", "coldstart", "matrix"]]


def opt(argv: list[str], name: str) -> str:
    return argv[argv.index(name) + 1]


@pytest.fixture
def lease(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A repo root with a results file and a log, the lease's /tmp paths moved under tmp_path."""
    root = tmp_path / "repo"
    (root / "results").mkdir(parents=True)
    (root / "results" / "results.jsonl").write_text("")
    (root / "experiment_terminal_output").mkdir()
    monkeypatch.chdir(root)
    monkeypatch.setenv("COLDSTART_HOME", str(tmp_path / "home"))
    monkeypatch.delenv("VLLM_CACHE_ROOT", raising=False)
    monkeypatch.setattr(cmp, "LEASE_LOGS", tmp_path / "lease-logs")
    monkeypatch.setattr(cmp, "LEASE_HOME_CACHES", tmp_path / "home-caches.txt")
    return tmp_path


def make(ex: FakeExecutor, lease: Path, *, repeats: int = 1, tag: str | None = None, clock=lambda: 0.0) -> Campaign:
    return Campaign(
        gpu="NVIDIA-H200",
        executor=ex,
        results=lease / "lease-results.jsonl",
        out=lease / "out",
        repeats=repeats,
        deadline_s=560.0,
        tag=tag,
        python=PY,
        clock=clock,
        sleep=lambda s: None,
    )


# ---------------------------------------------------------------- the registry


def test_every_step_names_registry_models_and_experiments_that_pair():
    assert step_problems() == []
    referenced = {m for actions in STEPS.values() for a in actions for m in getattr(a, "models", ())}
    assert referenced <= set(MODELS)
    assert {e for actions in STEPS.values() for a in actions for e in getattr(a, "experiments", ())} <= set(EXPERIMENTS)


def test_step_problems_catches_bad_names_pairs_and_states():
    bad = {
        "a": (Matrix(("no-such-model",), ("baseline",)),),
        "b": (Matrix(("tiny",), ("no-such-experiment",)),),
        "c": (Matrix(("tiny",), ("runai_streamer_sharded",)),),  # sharded state needs TP>1: the matrix skips it
        "d": (Matrix(("tiny",), ("baseline",), node_state="lukewarm"),),
        "e": (Publish("tiny", "nope"), Checkpoint("nope")),
    }
    problems = step_problems(bad)
    for step in "abcde":
        assert any(p.startswith(f"{step}:") for p in problems), (step, problems)


def test_the_steps_campaign_sh_had():
    assert set(STEPS) == {
        "tiny-lease",
        "tiny-cache",
        "tiny-s3",
        "tiny-cc",
        "tiny-cc-mismatch",
        "tiny-mega-miss",
        "tiny-mega-hit",
        "llama8b-lease",
        "llama8b-baseline",
        "llama8b-rest",
        "llama8b-hit",
        "llama8b-runai",
        "tp2-shard",
        "tp2-sharded",
        "tp2-rest",
        "fast-tiny",
        "fast-8b-prep",
        "fast-8b",
        "fast-8b-cold",
        "fast-8b-mega",
        "baseline-8b",
        "ladder-8b",
        "ladder-8b-rest",
        "scenarios-8b-fast",
        "scenarios-8b-x2",
        "scenarios-8b-x2-default",
        "fast-tp2",
        "70b-prep",
        "70b-baseline",
        "70b-rest",
        "70b-fast",
        "70b-shard",
        "70b-sharded",
        "moe-tiny",
        "moe-tiny-fp8",
        "235b-prep",
        "235b-fast",
        "235b-stock",
        "scenarios-8b-cc",
        "scenarios-tiny",
        "ladder-8b-inrep",
    }


def test_a_scenario_step_passes_its_scenarios_to_the_matrix(tmp_path: Path) -> None:
    import dataclasses

    from coldstart.lab.campaign import Matrix, step_problems

    (matrix,) = [a for a in STEPS["scenarios-8b-fast"] if isinstance(a, Matrix)]
    assert matrix.scenarios == ("tour", "sleep_wake") and matrix.node_state == "warm"
    assert step_problems({"x": (dataclasses.replace(matrix, scenarios=("nope",)),)}) == ["x: unknown scenario 'nope'"]


# ---------------------------------------------------------------- what a step expands to


def test_fast_8b_prep_expands_to_the_bash_commands(lease: Path):
    ex = FakeExecutor()
    c = make(ex, lease, repeats=3, tag="s7")
    c.engine_caches().mkdir(parents=True)  # the miss run left caches: publish them
    assert run_campaign(c, ["fast-8b-prep"]) == 0
    ckpt = str(lease / "home" / "checkpoints" / "llama-3-8b")
    assert ex.commands() == [
        [PY, "-m", "coldstart", "checkpoint", "llama-3-8b", "--no-progress"],
        [PY, "-m", "coldstart", "stage", "put", "llama-3-8b", "--from", ckpt],
        [PY, "-m", "coldstart", "matrix", "--results", str(lease / "lease-results.jsonl"), "--repeats", "1",
         "--time-budget-s", "560", "--node-state", "warm", "--campaign", "NVIDIA-H200-s7-warm-miss",
         "--models", "llama-3-8b", "--experiments", "cc_trims", "--capture"],
        [PY, "service.py", "llama-3-8b", "cc_trims", "--publish-compile-cache"],
    ]  # fmt: skip
    assert ex.calls[2].discard == "stdout"  # `checkpoint ... >/dev/null`, its errors still shown
    # Before the step: the stale Ray of a call cut short is stopped.
    assert [c.argv[0] for c in ex.calls[:2]] == ["ray", "pkill"]


def test_publish_without_engine_caches_shows_the_store_instead(lease: Path):
    ex = FakeExecutor()
    assert run_campaign(make(ex, lease), ["fast-8b-prep"]) == 0
    assert ex.commands()[-1] == [PY, "-m", "coldstart", "compile-cache", "show", "--model", "llama-3-8b"]
    assert not any("service.py" in argv for argv in ex.commands())


def test_unconditional_publish_runs_service_even_without_engine_caches(lease: Path):
    ex = FakeExecutor()
    run_campaign(make(ex, lease), ["tiny-cc"])
    assert [PY, "service.py", "tiny", "compile_cache", "--publish-compile-cache"] in ex.commands()
    assert [opt(m, "--campaign") for m in ex.matrices()] == ["NVIDIA-H200-cc-miss", "NVIDIA-H200-cc-hit"]


@pytest.mark.parametrize(
    "step,expected",
    [
        ("fast-8b", [("NVIDIA-H200-warm", "warm", "fast")]),
        ("fast-8b-cold", [("NVIDIA-H200-cold", "cold", "fast")]),
        ("tp2-sharded", [("NVIDIA-H200-x2", "cold", "runai_streamer_sharded")]),
        ("llama8b-lease", [("NVIDIA-H200", "cold", "baseline"), ("NVIDIA-H200", "cold", "runai_streamer")]),
        (
            "ladder-8b",
            [("NVIDIA-H200-warm", "warm", "baseline"), ("NVIDIA-H200-warm", "warm", "compile_cache")],
        ),
        ("tiny-mega-hit", [("NVIDIA-H200-mega-hit", "cold", "compile_cache_mega")]),
    ],
)
def test_campaign_names_and_node_states(lease: Path, step: str, expected):
    ex = FakeExecutor()
    run_campaign(make(ex, lease), [step])
    got = [(opt(m, "--campaign"), opt(m, "--node-state"), opt(m, "--experiments")) for m in ex.matrices()]
    assert got == expected


def test_tag_goes_between_gpu_and_suffix(lease: Path):
    ex = FakeExecutor()
    run_campaign(make(ex, lease, tag="s7"), ["llama8b-rest", "fast-8b"])
    assert [opt(m, "--campaign") for m in ex.matrices()] == ["NVIDIA-H200-s7", "NVIDIA-H200-s7-warm"]


@pytest.mark.parametrize("step", ["fast-tiny", "fast-8b-mega"])
def test_a_miss_run_is_one_run_whatever_repeats_says(lease: Path, step: str):
    ex = FakeExecutor()
    run_campaign(make(ex, lease, repeats=5), [step])
    miss, hit = ex.matrices()
    assert opt(miss, "--campaign").endswith("-warm-miss") and opt(miss, "--repeats") == "1"
    assert opt(hit, "--campaign").endswith("-warm") and opt(hit, "--repeats") == "5"
    assert miss.count("--repeats") == 1  # one value, not a later one overriding an earlier
    # Its miss fails the cache audit by design: resumed, the step must not run it again (lease s10 did).
    assert "--capture" in miss and "--capture" not in hit


def test_every_miss_campaign_is_a_capture():
    misses = [(name, a) for name, actions in STEPS.items() for a in actions if isinstance(a, Matrix)]
    misses = [(name, a) for name, a in misses if a.campaign_suffix.endswith("-miss")]
    assert len(misses) >= 8
    assert [name for name, a in misses if not a.capture] == []


def test_service_args_follow_a_double_dash(lease: Path):
    ex = FakeExecutor()
    run_campaign(make(ex, lease), ["tiny-cc-mismatch"])
    (m,) = ex.matrices()
    assert m[m.index("--") :] == ["--", "--max-model-len", "256"]


def test_s3_step_serves_s3_to_its_own_commands_only(lease: Path):
    ex = FakeExecutor()
    assert run_campaign(make(ex, lease), ["tiny-s3", "tiny-cache"]) == 0
    (server,) = ex.started
    assert server.argv[1:3] == ["-m", "moto.server"] and server.stopped
    s3_matrix = next(c for c in ex.calls if "matrix" in c.argv and "-s3" in opt(c.argv, "--campaign"))
    assert s3_matrix.env["AWS_ENDPOINT_URL"] == "http://127.0.0.1:5555"
    assert s3_matrix.argv[-3:] == ["--", "--store", "s3://lab/coldstart"]
    stage = next(c.argv for c in ex.calls if c.argv[3:5] == ["stage", "put"])
    assert stage[-2:] == ["--store", "s3://lab/coldstart"]
    later = [c for c in ex.calls if "matrix" in c.argv and opt(c.argv, "--campaign") == "NVIDIA-H200"]
    assert later and all("AWS_ENDPOINT_URL" not in c.env for c in later)


def test_a_failed_checkpoint_stages_nothing_but_the_step_goes_on(lease: Path):
    ex = FakeExecutor(on_run=lambda argv: 1 if "checkpoint" in argv else 0)
    assert run_campaign(make(ex, lease), ["baseline-8b"]) == 1
    assert not any(argv[3:5] == ["stage", "put"] for argv in ex.commands())
    assert len(ex.matrices()) == 1  # as in bash: the matrix still runs (and its runs fail on their own)


# ---------------------------------------------------------------- one deadline, failures, archives


def test_the_deadline_is_shared_across_actions_and_steps(lease: Path):
    now = [0.0]

    def matrix_takes_200_s(argv: list[str]) -> int:
        if "matrix" in argv:
            now[0] += 200.0
        return 0

    ex = FakeExecutor(on_run=matrix_takes_200_s)
    run_campaign(make(ex, lease, clock=lambda: now[0]), ["fast-tiny", "fast-8b"])
    assert [opt(m, "--time-budget-s") for m in ex.matrices()] == ["560", "360", "160"]


def _row(run_id: str) -> str:
    """A real row of the repo's results, renamed: import-runs reads it as a ResultRow."""
    row = json.loads(REPO_RESULTS.read_text().splitlines()[0])
    row["run_id"] = run_id
    row["log_path"] = f"experiment_terminal_output/tiny/baseline/{run_id}.log"
    return json.dumps(row) + "\n"


def test_a_failing_step_makes_the_exit_non_zero_and_later_steps_still_archive(lease: Path):
    results = lease / "lease-results.jsonl"
    runs_tgz = lease / "out" / "runs.tgz"
    seen_archive: list[bool] = []

    def play(argv: list[str]) -> int:
        if "matrix" not in argv:
            return 0
        seen_archive.append(runs_tgz.exists())
        campaign = opt(argv, "--campaign")
        run_id = f"20261129T000000Z-{len(seen_archive):04d}"
        with open(results, "a") as f:
            f.write(_row(run_id))
        log = Path(f"experiment_terminal_output/tiny/baseline/{run_id}.log")
        log.parent.mkdir(parents=True, exist_ok=True)
        log.write_text("a log\n")
        return 1 if campaign.endswith("-mega-hit") else 0  # the first step's matrix had a failed run

    ex = FakeExecutor(on_run=play)
    assert run_campaign(make(ex, lease), ["tiny-mega-hit", "fast-8b"]) == 1
    assert seen_archive == [False, True]  # the failed step was archived before the next one ran
    # The last archive holds both steps' rows and logs, in the layout import-runs reads.
    home_results = lease / "home-results.jsonl"
    report = import_archive(runs_tgz, home_results, dest_root=lease / "home-tree")
    assert sorted(report.imported) == ["20261129T000000Z-0001", "20261129T000000Z-0002"]
    assert report.missing_logs == [] and report.cut_short == []
    assert (lease / "lease-logs" / "tiny" / "baseline" / "20261129T000000Z-0002.log").exists()


def _store_entry(store_dir: Path, model: str, key: str, archive_name: str) -> Path:
    entry = store_dir / "compile-cache" / model / key
    entry.mkdir(parents=True)
    manifest = CacheManifest(archive_name, "gzip", "0" * 64, 1, 1, 1, (), "2026-11-30T00:00:00+00:00")
    (entry / MANIFEST_NAME).write_bytes(manifest.to_json())
    (entry / archive_name).write_text("x")
    return entry


def test_archive_layout_one_archive_per_compile_cache_entry(lease: Path):
    ex = FakeExecutor()
    c = make(ex, lease)
    fast = _store_entry(c.store_dir, "llama-3-8b", "3a4dfd60ae8e3b4b", "cache-new.tar.gz")
    (fast / "cache-old.tar.gz").write_text("an archive the manifest no longer names")
    _store_entry(c.store_dir, "tiny", "0123456789abcdef", "cache-t.tar.gz")
    torn = c.store_dir / "compile-cache" / "tiny" / "fedcba9876543210"
    torn.mkdir()
    (torn / "cache-x.tar.gz").write_text("no manifest")
    run_campaign(c, ["fast-8b"])
    with tarfile.open(lease / "out" / "runs.tgz") as tar:
        names = tar.getnames()
    assert "results/results.jsonl" in names and "experiment_terminal_output" in names
    out = sorted(p.name for p in (lease / "out").glob("cc-*.tgz"))
    assert out == ["cc-llama-3-8b-3a4dfd60ae8e3b4b.tgz", "cc-tiny-0123456789abcdef.tgz", "cc-tiny-fedcba9876543210.tgz"]
    with tarfile.open(lease / "out" / out[0]) as tar:
        assert sorted(tar.getnames()) == [
            "compile-cache/llama-3-8b/3a4dfd60ae8e3b4b/cache-new.tar.gz",
            "compile-cache/llama-3-8b/3a4dfd60ae8e3b4b/manifest.json",
        ]
    with tarfile.open(lease / "out" / out[2]) as tar:  # unreadable: whole, for `show --verify` to judge
        assert "compile-cache/tiny/fedcba9876543210/cache-x.tar.gz" in tar.getnames()
    assert not list((lease / "out").glob("*.partial"))
    # What comes back is what the next lease carries: unpacked, it is the same store.
    carried = lease / "next-store"
    carried.mkdir()
    for archive in (lease / "out").glob("cc-*.tgz"):
        with tarfile.open(archive) as tar:
            tar.extractall(carried, filter="data")
    assert (carried / "compile-cache" / "tiny" / "0123456789abcdef" / MANIFEST_NAME).is_file()
    assert not (carried / "compile-cache" / "llama-3-8b" / "3a4dfd60ae8e3b4b" / "cache-old.tar.gz").exists()


def test_entries_carried_in_unchanged_stay_out_of_every_call_s_archives(lease: Path):
    # Lease s10: seven carried entries + runs.tgz + the call's log passed the 8 files a call returns.
    ex = FakeExecutor()
    c = make(ex, lease)
    kept = _store_entry(c.store_dir, "llama-3-8b", "3a4dfd60ae8e3b4b", "cache-a.tar.gz")
    changed = _store_entry(c.store_dir, "tiny", "0123456789abcdef", "cache-t.tar.gz")
    cmp.CARRIED_CACHES.mkdir(parents=True)
    for entry in (kept, changed):
        with tarfile.open(cmp.CARRIED_CACHES / f"cc-{entry.parent.name}-{entry.name}.tgz", "w:gz") as tar:
            for path, arcname in cmp.entry_members(entry, c.store_dir):
                tar.add(path, arcname=arcname)
    (cmp.CARRIED_CACHES / "cc-broken.tgz").write_bytes(b"not a tarball")
    # This lease: the tiny entry was replaced (another manifest), and a new entry was published.
    (changed / MANIFEST_NAME).write_bytes((changed / MANIFEST_NAME).read_bytes().replace(b"cache-t", b"cache-u"))
    (changed / "cache-u.tar.gz").write_text("y")
    _store_entry(c.store_dir, "tiny-moe", "d55a384e27a5ed30", "cache-m.tar.gz")
    run_campaign(c, ["fast-8b"])
    expected = ["cc-tiny-0123456789abcdef.tgz", "cc-tiny-moe-d55a384e27a5ed30.tgz"]
    assert sorted(p.name for p in (lease / "out").glob("cc-*.tgz")) == expected
    # A later call of the lease carries nothing, and still leaves home's entries out.
    shutil.rmtree(cmp.CARRIED_CACHES)
    shutil.rmtree(lease / "out")
    run_campaign(make(FakeExecutor(), lease), ["fast-8b"])
    assert sorted(p.name for p in (lease / "out").glob("cc-*.tgz")) == expected


def test_setup_seeds_the_lease_results_once_and_brings_back_earlier_logs(lease: Path):
    Path("results/results.jsonl").write_text(_row("20261129T000000Z-seed"))
    old = lease / "lease-logs" / "tiny" / "baseline" / "old.log"
    old.parent.mkdir(parents=True)
    old.write_text("from an earlier call\n")
    here = Path("experiment_terminal_output/tiny/baseline/here.log")
    here.parent.mkdir(parents=True)
    here.write_text("this call's\n")
    (lease / "lease-logs" / "tiny" / "baseline" / "here.log").write_text("stale copy\n")
    c = make(FakeExecutor(), lease)
    c.prepare()
    assert (lease / "lease-results.jsonl").read_text() == Path("results/results.jsonl").read_text()
    assert Path("experiment_terminal_output/tiny/baseline/old.log").exists()
    assert here.read_text() == "this call's\n"  # cp -n: what is here stays
    (lease / "lease-results.jsonl").write_text("")
    c.prepare()
    assert (lease / "lease-results.jsonl").read_text() == ""  # seeded once per lease, never again


# ---------------------------------------------------------------- the CLI


def _args(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    cmp.add_cli_args(parser)
    return parser.parse_args(list(argv))


def test_dry_run_runs_nothing_and_prints_every_command(lease: Path, monkeypatch, capsys):
    def refuse(*a, **k):
        raise AssertionError("a dry run started a process")

    monkeypatch.setattr(subprocess, "run", refuse)
    monkeypatch.setattr(subprocess, "Popen", refuse)
    out_dir = lease / "out"
    rc = cmp.main(
        _args("fast-8b-prep", "tiny-s3", "--dry-run", "--gpu", "NVIDIA H200", "--repeats", "3", "--out", str(out_dir),
              "--results", str(lease / "lease-results.jsonl"))
    )  # fmt: skip
    assert rc == 0
    printed = capsys.readouterr().out
    assert not out_dir.exists() and not (lease / "lease-results.jsonl").exists()
    assert "--campaign NVIDIA-H200-warm-miss" in printed and "--repeats 1" in printed
    assert "service.py llama-3-8b cc_trims --publish-compile-cache" in printed
    assert "compile-cache show --model llama-3-8b" in printed
    assert "moto.server" in printed and "--store s3://lab/coldstart" in printed
    assert printed.count("archive:") == 2 and printed.count("ray stop --force") == 2


def test_unknown_step_runs_nothing(lease: Path, monkeypatch, capsys):
    monkeypatch.setattr(cmp, "run_campaign", lambda *a: pytest.fail("ran"))
    assert cmp.main(_args("fast-8b", "fast-9b", "--gpu", "X")) == 2
    assert "fast-9b" in capsys.readouterr().err


def test_no_gpu_name_is_an_error_not_an_empty_campaign_name(lease: Path, monkeypatch, capsys):
    monkeypatch.setattr(cmp, "gpu_name", lambda: (_ for _ in ()).throw(RuntimeError("nvidia-smi gave no GPU name")))
    monkeypatch.setattr(cmp, "run_campaign", lambda *a: pytest.fail("ran"))
    assert cmp.main(_args("fast-8b")) == 2
    assert "--gpu" in capsys.readouterr().err


def test_campaign_is_a_coldstart_tool():
    assert cli.TOOLS["campaign"][0] == "coldstart.lab.campaign"


def test_a_carried_store_is_merged_into_the_store_and_a_bad_one_fails_the_call_not_the_steps(lease: Path):
    cmp.CARRIED_CACHES.mkdir(parents=True)
    bad, good = cmp.CARRIED_CACHES / "cc-a.tgz", cmp.CARRIED_CACHES / "cc-b.tgz"
    bad.write_bytes(b"not a tarball")
    good.write_bytes(b"")
    ex = FakeExecutor(on_run=lambda argv: 2 if argv[0] == "tar" and argv[2] == str(bad) else 0)
    c = make(ex, lease)
    assert run_campaign(c, ["fast-8b"]) == 1
    unpack = [["tar", "xzf", str(a), "--skip-old-files", "-C", str(c.store_dir)] for a in (bad, good)]
    assert [call.argv for call in ex.calls[:2]] == unpack  # one bad archive does not keep the others out
    assert len(ex.matrices()) == 1  # the steps ran all the same
    # A store that already has entries (this lease's) still gets the carried ones it lacks.
    (c.store_dir / "compile-cache").mkdir(parents=True)
    ex2 = FakeExecutor()
    assert run_campaign(make(ex2, lease), ["fast-8b"]) == 0
    assert [call.argv for call in ex2.calls[:2]] == unpack


def test_unpacking_a_carried_store_keeps_the_entries_the_store_has_and_adds_the_rest(tmp_path: Path):
    import tarfile

    carried = tmp_path / "carried"
    for name, body in (("compile-cache/m/old/manifest.json", "carried"), ("compile-cache/m/new/manifest.json", "n")):
        (carried / name).parent.mkdir(parents=True, exist_ok=True)
        (carried / name).write_text(body)
    tgz = tmp_path / "cc.tgz"
    with tarfile.open(tgz, "w:gz") as tar:
        tar.add(carried / "compile-cache", arcname="compile-cache")
    store = tmp_path / "store"
    (store / "compile-cache/m/old").mkdir(parents=True)
    (store / "compile-cache/m/old/manifest.json").write_text("this lease's")
    argv = ["tar", "xzf", str(tgz), "--skip-old-files", "-C", str(store)]
    assert cmp.SubprocessExecutor().run(argv, env={}) == 0
    assert (store / "compile-cache/m/old/manifest.json").read_text() == "this lease's"
    assert (store / "compile-cache/m/new/manifest.json").read_text() == "n"


def test_subprocess_executor_statuses_env_and_background(tmp_path: Path, capfd):
    import sys

    ex = cmp.SubprocessExecutor()
    assert ex.run([sys.executable, "-c", "import sys; sys.exit(3)"], env={}) == 3
    assert ex.run([sys.executable, "-c", "import os; print(os.environ['CS_X'])"], env={"CS_X": "seen"}) == 0
    assert ex.run([sys.executable, "-c", "print('hidden')"], env={}, discard="stdout") == 0
    assert ex.run(["/no/such/program"], env={}) == 127
    out = capfd.readouterr()
    assert "seen" in out.out and "hidden" not in out.out and "/no/such/program" in out.err
    bg = ex.start([sys.executable, "-c", "import time; print('up', flush=True); time.sleep(60)"], env={},
                  log_path=tmp_path / "bg.log")  # fmt: skip
    bg.stop()
    assert bg.proc.returncode is not None


def test_a_scenario_step_expands_to_a_matrix_with_its_scenarios(lease: Path):
    ex = FakeExecutor()
    assert run_campaign(make(ex, lease, repeats=2, tag="s7"), ["scenarios-8b-cc"]) == 0
    (matrix,) = [argv for argv in ex.commands() if "matrix" in argv]
    assert matrix[-3:] == ["compile_cache", "--scenarios", "tour"]
    assert matrix[matrix.index("--campaign") + 1] == "NVIDIA-H200-s7-warm"


# ---------------------------------------------------------------- the 70B on four GPUs: one copy on the disk


def test_70b_stages_its_checkpoint_by_hard_links(lease: Path):
    ex = FakeExecutor()
    assert run_campaign(make(ex, lease), ["70b-prep"]) == 0
    ckpt = str(lease / "home" / "checkpoints" / "llama-3-70b")
    assert ex.commands()[-1] == [PY, "-m", "coldstart", "stage", "put", "llama-3-70b", "--from", ckpt, "--link"]


def test_70b_shard_builds_in_ram_evicts_then_stages_the_sharded_copy(lease: Path):
    built = cmp._70B_SHARDED_BUILD
    ex = FakeExecutor(on_run=lambda argv: 0)
    c = make(ex, lease)
    parent_was_there = Path(built).parent.exists()
    Path(built).mkdir(parents=True, exist_ok=True)  # what a finished `shard` leaves
    try:
        assert run_campaign(c, ["70b-shard"]) == 0
    finally:
        Path(built).rmdir()
        if not parent_was_there:
            Path(built).parent.rmdir()
    cmds = [argv for argv in ex.commands() if argv[:1] != ["tar"]]
    shard = next(i for i, a in enumerate(cmds) if "shard" in a)
    evict = next(i for i, a in enumerate(cmds) if a[:2] == ["rm", "-rf"] and "checkpoints" in a[2])
    stage = next(i for i, a in enumerate(cmds) if "--tp" in a)
    assert shard < evict < stage
    assert cmds[shard][-4:] == ["--out", built, "--no-upload", "--no-progress"]
    assert cmds[evict][2:] == [
        str(lease / "home" / "checkpoints" / "llama-3-70b"),
        str(c.store_dir / "models" / "llama-3-70b"),
    ]
    assert cmds[stage][-4:] == ["--tp", "4", "--from", built]
    assert cmds[stage + 1] == ["rm", "-rf", built]


def test_70b_shard_that_built_nothing_keeps_the_checkpoint(lease: Path):
    ex = FakeExecutor(on_run=lambda argv: 1 if "shard" in argv else 0)
    assert not Path(cmp._70B_SHARDED_BUILD).exists()
    assert run_campaign(make(ex, lease), ["70b-shard"]) == 1
    assert not any(a[:2] == ["rm", "-rf"] and "checkpoints" in a[2] for a in ex.commands())
