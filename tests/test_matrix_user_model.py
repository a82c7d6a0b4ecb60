"""The matrix on a user's own model (``--models NAME -- --model-id FOLDER_OR_HUB_ID [--tp N]``): checked as service.py
checks it before the first cold start, its pairs planned, and its weights evicted for a cold run and read for a
warm one. No Ray: the clear runs a stand-in clear_cache.py, or the real tool in this process."""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path

import pytest
from test_matrix_cli import _args, nothing_starts  # noqa: F401  (nothing_starts: a fixture, used by name)

from coldstart import paths
from coldstart.lab import caches
from coldstart.lab.matrix import cli
from coldstart.lab.matrix.plan import RunSpec, pair_problem, plan
from coldstart.lab.matrix.service_sut import ServiceSUT
from coldstart.lab.matrix.user_model import UserModel, node_weights, user_model_of
from coldstart.registry import MODELS, InvalidPairError, UserModelError, get_model, model_from_hf_config, resolve_model

NAME = "my-llama"


def _config() -> dict:
    return get_model("tiny").arch.hf_config()


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    """A user's model folder (tiny's shape, under a name no registry entry has), outside every lab root."""
    assert NAME not in MODELS
    out = tmp_path / "weights" / NAME
    out.mkdir(parents=True)
    (out / "config.json").write_text(json.dumps(_config()))
    (out / "model.safetensors").write_bytes(b"w" * 3000)
    return out


@pytest.fixture
def results(tmp_path: Path) -> Path:
    return tmp_path / "results" / "results.jsonl"


def _matrix(results: Path, *argv: str, service: tuple[str, ...]) -> int:
    return cli.main(_args([*argv, "--results", str(results), "--", *service]))


# ---------------------------------------------------------------------------------------------------------
# refused before the first cold start: exit 2, nothing written


@pytest.mark.parametrize(
    ("models", "service", "needle"),
    [
        ([NAME], ("--model-id", "{tmp}/no-such-folder"), "no-such-folder is not a folder on this node"),
        ([NAME], ("--model-id", "{tmp}"), "not a Hugging Face model folder (no config.json)"),
        (["tiny"], ("--model-id", "{folder}"), "--models tiny: a registry model given with --model-id"),
        ([NAME, "other"], ("--model-id", "{folder}"), "--model-id (after --) is one model"),
        (["tiny"], ("--tp", "2"), "--tp (after --) sets the TP size of a --model-id"),
        ([NAME], ("--model-id", "{folder}", "--tp", "0"), "argument --tp"),
        ([NAME], ("--model-id", "{folder}", "--tp", "3"), "cannot run at TP3"),
        ([NAME], ("--model-id", "{folder}", "--weights", "{folder}"), "--weights and --model-id both name"),
        ([NAME], ("--model-id",), "argument --model-id: expected one argument"),
        (["my/llama"], ("--model-id", "{folder}"), "invalid model name 'my/llama'"),
    ],
)
def test_a_user_model_the_service_would_refuse_is_refused_before_anything_starts(
    nothing_starts: None,  # noqa: F811
    results: Path,
    folder: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    models: list[str],
    service: tuple[str, ...],
    needle: str,
) -> None:
    given = tuple(a.format(tmp=tmp_path, folder=folder) for a in service)
    assert _matrix(results, "--models", *models, "--repeats", "1", service=("--device", "cpu", *given)) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and needle in err, err
    assert not results.exists() and not results.parent.exists()


def test_weights_the_clear_would_delete_are_refused(
    nothing_starts: None,  # noqa: F811
    results: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    # <home>/models is the lab's own model copies, emptied before each run: a user's folder there would go.
    inside = paths.coldstart_home() / "models" / NAME
    inside.mkdir(parents=True)
    (inside / "config.json").write_text(json.dumps(_config()))
    assert _matrix(results, "--models", NAME, service=("--model-id", str(inside))) == 2
    err = capsys.readouterr().err
    assert "coldstart-models" in err and "would delete your weights" in err
    assert (inside / "config.json").is_file() and not results.exists()
    # Told not to clear that root (or not to clear at all), it runs.
    assert (
        _matrix(results, "--models", NAME, "--clear-only", "vllm", "--dry-run", service=("--model-id", str(inside)))
        == 0
    )
    assert _matrix(results, "--models", NAME, "--no-clear", "--dry-run", service=("--model-id", str(inside))) == 0


# ---------------------------------------------------------------------------------------------------------
# planned and listed


def test_the_registry_resolves_a_model_it_does_not_hold() -> None:
    at_tp1 = model_from_hf_config(NAME, _config(), tp_size=1)
    at_tp2 = model_from_hf_config(NAME, _config(), tp_size=2)
    assert resolve_model(at_tp1, "all")[1].load_format == "runai_streamer"  # as for a registry model at TP1
    assert resolve_model(at_tp2, "runai_streamer_sharded")[1].sharded_state
    with pytest.raises(InvalidPairError, match=f"{NAME!r} runs at TP1"):
        resolve_model(at_tp1, "runai_streamer_sharded")


def test_a_user_models_pairs_are_planned_with_its_own_tp() -> None:
    experiments = ["baseline", "fast", "runai_streamer_sharded"]
    for tp, planned in ((1, ["baseline", "fast"]), (2, experiments)):
        own = {NAME: model_from_hf_config(NAME, _config(), tp_size=tp)}
        specs = plan([NAME], experiments, 2, "c", user_models=own, service_args=["--model-id", "/m"])
        assert [(s.model, s.experiment, s.repeat) for s in specs] == [(NAME, e, r) for r in (0, 1) for e in planned]
        assert {s.service_args for s in specs} == {("--model-id", "/m")}
    # Why a pair is left out, for the matrix's "no pair can run" message.
    own_tp1 = {NAME: model_from_hf_config(NAME, _config(), tp_size=1)}
    assert "needs tensor parallelism > 1" in str(pair_problem(NAME, "runai_streamer_sharded", own_tp1))
    assert pair_problem(NAME, "fast", own_tp1) is None


def test_the_dry_run_lists_the_user_models_runs(
    nothing_starts: None,  # noqa: F811
    results: Path,
    folder: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    service = ("--model-id", str(folder), "--tp", "1", "--device", "cpu")
    argv = ("--models", NAME, "--experiments", "baseline", "fast", "--repeats", "2", "--campaign", "u", "--dry-run")
    assert _matrix(results, *argv, service=service) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[:4] == [f"todo  u  {NAME}  {e}  single  #{r}" for r in (0, 1) for e in ("baseline", "fast")]
    assert out[4] == f"{NAME}: your model from {folder}, LlamaForCausalLM at TP1"
    assert out[5] == f"4 of 4 runs to do; service args: {' '.join(service)}"
    assert not results.exists()


def test_the_matrix_hands_the_user_model_to_the_system_under_test(
    monkeypatch: pytest.MonkeyPatch, results: Path, folder: Path
) -> None:
    made: list[tuple[list[str], dict]] = []

    def stop_here(service_args: list[str], **kwargs: object) -> None:
        made.append((service_args, kwargs))
        raise KeyboardInterrupt  # what it was built with is all this test asks

    monkeypatch.setattr(cli, "ServiceSUT", stop_here)
    monkeypatch.setattr(cli, "collect_provenance", lambda: None)
    with pytest.raises(KeyboardInterrupt):
        _matrix(results, "--models", NAME, "--experiments", "fast", service=("--model-id", str(folder)))
    ((service_args, kwargs),) = made
    assert service_args == ["--model-id", str(folder)]  # passed on to every service.py as given
    user = kwargs["user_model"]
    assert isinstance(user, UserModel) and user.model.name == NAME and user.model.local_dir == folder.resolve()


# ---------------------------------------------------------------------------------------------------------
# node state: what the clear evicts, what a warm node reads

_RECORDS_ARGS = """
import json, sys
from pathlib import Path
Path(__file__).with_name("clear_args.json").write_text(json.dumps(sys.argv[1:]))
"""


def _sut(tmp_path: Path, user: UserModel, clear_only: tuple[str, ...] = ()) -> ServiceSUT:
    """The real system under test, its clear_cache.py a stand-in that records what it was told."""
    work = tmp_path / "work"
    work.mkdir(exist_ok=True)
    (work / "clear_cache.py").write_text(_RECORDS_ARGS)
    return ServiceSUT([], workdir=work, user_model=user, clear_only=clear_only)


def _told(tmp_path: Path, flag: str) -> list[str]:
    """The values clear_cache.py was given for ``flag`` (``--evict`` takes several)."""
    argv = json.loads((tmp_path / "work" / "clear_args.json").read_text())
    values: list[str] = []
    for i, arg in enumerate(argv):
        if arg == flag:
            values += [a for a in argv[i + 1 :] if not a.startswith("--")][: None if flag == "--evict" else 1]
    return values


def test_a_cold_run_evicts_the_user_folder_and_a_warm_one_reads_it(tmp_path: Path, folder: Path) -> None:
    user = user_model_of([NAME], ["--model-id", str(folder)])
    assert user is not None
    sut = _sut(tmp_path, user)
    cold = sut.clear(RunSpec(NAME, "fast", 0, node_state="cold"))
    assert str(folder) in _told(tmp_path, "--evict")
    assert _told(tmp_path, "--weights-root") == [str(folder)]  # outside the lab's roots: the clear is told so
    assert cold["user_weights_evicted"] == str(folder)

    warm = sut.clear(RunSpec(NAME, "fast", 0, node_state="warm"))
    assert _told(tmp_path, "--evict") == [] and _told(tmp_path, "--weights-root") == []
    assert warm["user_weights_read"] == str(folder)
    assert warm["page_cache_read_bytes"] == (folder / "config.json").stat().st_size + 3000

    # A registry model of the same campaign is not given the user's weights.
    sut.clear(RunSpec("tiny", "fast", 0, node_state="cold"))
    assert str(folder) not in _told(tmp_path, "--evict")


def test_the_clear_tool_evicts_in_a_weights_root_it_is_told_of(
    folder: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    parser = caches.add_cli_args(argparse.ArgumentParser())
    assert caches.main(parser.parse_args(["--evict", str(folder)])) == 2  # outside every root: refused as before
    assert "not inside a known cache root" in capsys.readouterr().err
    assert caches.main(parser.parse_args(["--evict", str(folder), "--weights-root", str(folder)])) == 0
    assert "evicted 2 files" in capsys.readouterr().out
    assert sorted(p.name for p in folder.iterdir()) == ["config.json", "model.safetensors"]  # evicted, not cleared


def _hub_user(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, *, cached: bool) -> tuple[UserModel, Path]:
    """A Hub id's model; ``cached``: a complete snapshot of it in the Hugging Face cache (links into blobs/)."""
    hub = tmp_path / "hf" / "hub"
    monkeypatch.setenv("HF_HUB_CACHE", str(hub))
    repo = hub / "models--someone--my-llama"
    if cached:
        (repo / "refs").mkdir(parents=True)
        (repo / "refs" / "main").write_text("abc123")
        (repo / "blobs").mkdir()
        snapshot = repo / "snapshots" / "abc123"
        snapshot.mkdir(parents=True)
        for name, body in (("config.json", json.dumps(_config()).encode()), ("model.safetensors", b"w" * 3000)):
            (repo / "blobs" / name).write_bytes(body)
            os.symlink(f"../../blobs/{name}", snapshot / name)
    model = model_from_hf_config(NAME, _config(), tp_size=1, hub_id="someone/my-llama")
    return UserModel(model, "someone/my-llama"), repo


def test_a_hub_snapshot_is_evicted_or_said_to_be_removed(monkeypatch, tmp_path: Path) -> None:
    user, repo = _hub_user(monkeypatch, tmp_path, cached=True)
    assert node_weights(user).folder == repo
    # Only the engine caches are cleared: the snapshot stays on disk, so its bytes are evicted.
    cold = _sut(tmp_path, user, clear_only=("vllm",)).clear(RunSpec(NAME, "fast", 0))
    assert str(repo) in _told(tmp_path, "--evict") and _told(tmp_path, "--weights-root") == []
    assert cold["user_weights_evicted"] == str(repo)
    # Every root cleared: the Hugging Face cache is emptied with the snapshot in it (evicting it then would fail).
    cold = _sut(tmp_path, user).clear(RunSpec(NAME, "fast", 0))
    assert str(repo) not in _told(tmp_path, "--evict")
    assert "the clear empties hf-hub" in cold["user_weights_removed"]
    warm = _sut(tmp_path, user, clear_only=("vllm",)).clear(RunSpec(NAME, "fast", 0, node_state="warm"))
    assert warm["user_weights_read"] == str(repo) and warm["page_cache_read_bytes"] >= 3000


def test_a_hub_id_without_a_snapshot_is_never_claimed_cold_or_warm(monkeypatch, tmp_path: Path) -> None:
    user, _repo = _hub_user(monkeypatch, tmp_path, cached=False)
    sut = _sut(tmp_path, user, clear_only=("vllm",))
    cold = sut.clear(RunSpec(NAME, "fast", 0))
    assert "user_weights_evicted" not in cold
    assert cold["user_weights_not_evicted"].startswith("no complete snapshot of someone/my-llama")
    warm = sut.clear(RunSpec(NAME, "fast", 0, node_state="warm"))
    assert "none of its files were read" in warm["user_weights_not_read"] and "user_weights_read" not in warm


def test_a_hub_id_is_refused_as_the_service_refuses_it(
    nothing_starts: None,  # noqa: F811
    monkeypatch: pytest.MonkeyPatch,
    results: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    # Offline and nowhere cached or staged: the service would refuse it before Ray; the matrix before any run.
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "empty-hub"))
    assert _matrix(results, "--models", NAME, service=("--model-id", "someone/my-llama")) == 2
    err = capsys.readouterr().err
    assert "HF_HUB_OFFLINE is set" in err and "someone/my-llama" in err
    assert not results.exists()
    with pytest.raises(UserModelError, match="neither a folder on this node nor a Hub id"):
        user_model_of([NAME], ["--model-id", "not a hub id"])
