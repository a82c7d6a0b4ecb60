"""``python -m coldstart shard``: input checks and exit codes, the file rules, the store round trip with the vLLM
child replaced by a fake, and (e2e) the real vLLM 0.25.1 child on CPU and on two GPUs."""

from __future__ import annotations

import importlib.metadata
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from coldstart import cli
from coldstart.registry import get_model
from coldstart.storage import sharding
from coldstart.storage.sharding import (
    InvalidShardRequest,
    SaveAudit,
    ShardingFailed,
    ShardJob,
    check_device,
    copy_metadata,
    cpu_thread_binding,
    is_weight_file,
    metadata_files,
    rank_files,
)
from coldstart.storage.staging import MANIFEST_NAME, read_manifest, upload_dir
from coldstart.storage.store import LocalStore

REPO = Path(__file__).resolve().parents[1]

# A Hub-style checkpoint folder: what the per-rank files replace, and what must travel with them.
METADATA = {
    "config.json": b'{"architectures": ["LlamaForCausalLM"]}',
    "generation_config.json": b'{"eos_token_id": 2}',
    "tokenizer.json": b'{"model": {}}',
    "tokenizer_config.json": b'{"chat_template": "x"}',
    "special_tokens_map.json": b"{}",
    "chat_template.jinja": b"{{ m }}",
    "original/params.json": b'{"dim": 4096}',
    "original/tokenizer.model": b"sentencepiece",
}
WEIGHTS = {
    "model-00001-of-00002.safetensors": b"w1",
    "model-00002-of-00002.safetensors": b"w2",
    "model.safetensors.index.json": b'{"weight_map": {}}',
    "pytorch_model.bin": b"w3",
    "pytorch_model.bin.index.json": b"{}",
    "original/consolidated.00.pth": b"w4",
}
NOT_MODEL_CONTENT = {
    MANIFEST_NAME: b"{}",  # describes the source folder's files, not the sharded one's
    "coldstart-checkpoint.json": b"{}",
    ".git/HEAD": b"ref",
    ".cache/huggingface/download/x.lock": b"",
}


def _write_tree(root: Path, files: dict[str, bytes]) -> Path:
    for rel, data in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
    return root


@pytest.fixture
def hf_dir(tmp_path: Path) -> Path:
    return _write_tree(tmp_path / "hf", {**METADATA, **WEIGHTS, **NOT_MODEL_CONTENT})


@pytest.fixture
def lab(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A private lab home and local store; no GPUs and two usable cores, whatever this machine has."""
    home = tmp_path / "home"
    monkeypatch.setenv("COLDSTART_HOME", str(home))
    monkeypatch.setenv("COLDSTART_STORE", (tmp_path / "store").as_uri())
    monkeypatch.delenv("VLLM_CPU_OMP_THREADS_BIND", raising=False)
    monkeypatch.setattr(sharding, "visible_gpu_count", lambda: 0)
    monkeypatch.setattr(sharding, "usable_cpus", lambda: [0, 1])
    return home


@pytest.fixture
def no_child(monkeypatch: pytest.MonkeyPatch) -> None:
    """Input errors must be found before vLLM starts (minutes on a big model)."""

    def refuse(job: ShardJob, extra_env: dict[str, str]) -> None:
        raise AssertionError(f"vLLM was started for {job}")

    monkeypatch.setattr(sharding, "run_save", refuse)


class FakeSave:
    """Stands in for the vLLM child: writes what vLLM's save would (every rank, or only some)."""

    def __init__(self, ranks: list[int] | None = None) -> None:
        self.ranks = ranks
        self.jobs: list[tuple[ShardJob, dict[str, str]]] = []
        self.sources: list[set[str]] = []  # the checkpoint folder vLLM was given, as it was while it ran

    def __call__(self, job: ShardJob, extra_env: dict[str, str]) -> None:
        self.jobs.append((job, dict(extra_env)))
        self.sources.append(
            {p.relative_to(job.model_dir).as_posix() for p in Path(job.model_dir).rglob("*") if p.is_file()}
        )
        for rank in self.ranks if self.ranks is not None else range(job.tp_size):
            (Path(job.out_dir) / f"model-rank-{rank}-part-0.safetensors").write_bytes(b"rank%d" % rank)


def _shard(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    rc = cli.main(["shard", *argv])
    out, err = capsys.readouterr()
    return rc, out, err


# ------------------------------------------------------------------------------------- input checks, exit codes


def test_unknown_model_exits_2_and_lists_valid_names(lab, no_child, capsys):
    rc, _, err = _shard(capsys, "llama-9", "--tp", "2")
    assert rc == 2
    assert "unknown model 'llama-9'" in err and "tiny" in err and "llama-3-70b" in err


@pytest.mark.parametrize("argv", [["tiny"], ["tiny", "--tp", "1"], ["llama-3-70b", "--tp", "1"]])
def test_tp_below_2_exits_2(lab, no_child, capsys, argv):
    rc, _, err = _shard(capsys, *argv, "--device", "cpu")
    assert rc == 2
    assert "tensor parallelism > 1" in err and "--tp" in err


def test_tp_that_cannot_split_the_heads_exits_2(lab, no_child, capsys):
    rc, _, err = _shard(capsys, "tiny", "--tp", "3", "--device", "cpu")  # 4 heads, 2 KV heads
    assert rc == 2
    assert "TP3 cannot split" in err and "valid TP sizes: 2, 4" in err


@pytest.mark.parametrize(("gpus", "hint"), [(0, "pass --device cpu"), (1, "")])
def test_more_gpus_than_visible_exits_2_with_the_count(lab, no_child, capsys, monkeypatch, gpus, hint):
    monkeypatch.setattr(sharding, "visible_gpu_count", lambda: gpus)
    rc, _, err = _shard(capsys, "llama-3-70b")  # registry TP4
    assert rc == 2
    assert f"TP4 needs 4 GPUs, {gpus} visible" in err
    assert hint in err
    assert ("--device cpu" in err) == bool(hint)


def test_cpu_needs_a_core_per_rank(lab, no_child, capsys, monkeypatch):
    monkeypatch.setattr(sharding, "usable_cpus", lambda: [3])
    rc, _, err = _shard(capsys, "tiny", "--tp", "2", "--device", "cpu")
    assert rc == 2
    assert "at least 2 usable CPU cores" in err


def test_checkpoint_not_staged_exits_1_and_says_how_to_stage(lab, no_child, capsys):
    rc, _, err = _shard(capsys, "tiny", "--tp", "2", "--device", "cpu")
    assert rc == 1
    assert "no staged checkpoint of 'tiny'" in err
    assert "python -m coldstart stage put tiny --from DIR" in err and "--from DIR" in err
    assert not (lab / "sharded" / "tiny").exists()


def test_from_dir_must_be_a_hf_folder(lab, no_child, capsys, tmp_path):
    (tmp_path / "empty").mkdir()
    rc, _, err = _shard(capsys, "tiny", "--tp", "2", "--device", "cpu", "--from", str(tmp_path / "empty"))
    assert rc == 2 and "no config.json" in err
    rc, _, err = _shard(capsys, "tiny", "--tp", "2", "--device", "cpu", "--from", str(tmp_path / "missing"))
    assert rc == 2 and "is not a directory" in err


def test_non_empty_out_needs_overwrite(lab, capsys, hf_dir, tmp_path, monkeypatch):
    monkeypatch.setattr(sharding, "run_save", FakeSave())
    out = _write_tree(tmp_path / "out", {"model-rank-3-part-0.safetensors": b"stale TP4 rank"})
    args = ["tiny", "--tp", "2", "--device", "cpu", "--from", str(hf_dir), "--out", str(out), "--no-upload"]
    rc, _, err = _shard(capsys, *args)
    assert rc == 2 and "--overwrite" in err
    rc, _, err = _shard(capsys, *args, "--overwrite")
    assert rc == 0, err
    assert sorted(p.name for p in out.glob("model-rank-*")) == [
        "model-rank-0-part-0.safetensors",
        "model-rank-1-part-0.safetensors",
    ]  # the stale rank 3 is gone


def test_out_inside_the_checkpoint_is_refused(lab, no_child, capsys, hf_dir):
    rc, _, err = _shard(
        capsys,
        "tiny",
        "--tp",
        "2",
        "--device",
        "cpu",
        "--from",
        str(hf_dir),
        "--out",
        str(hf_dir / "sharded"),
        "--no-upload",
    )
    assert rc == 2 and "overlap" in err


def test_bad_store_uri_exits_2(lab, no_child, capsys):
    rc, _, err = _shard(capsys, "tiny", "--tp", "2", "--device", "cpu", "--store", "ftp://nowhere/x")
    assert rc == 2 and "error:" in err


def test_cpu_binding_gives_each_rank_its_own_cores():
    assert cpu_thread_binding([0, 1], 2) == "0|1"
    assert cpu_thread_binding(list(range(8)), 2) == "0,1,2,3|4,5,6,7"
    assert cpu_thread_binding([4, 5, 6], 2) == "4|5"
    with pytest.raises(InvalidShardRequest, match="at least 4"):
        cpu_thread_binding([0, 1], 4)


def test_cpu_binding_set_by_the_user_wins(monkeypatch):
    monkeypatch.setattr(sharding, "usable_cpus", lambda: [0, 1])
    assert check_device("cpu", 2, {}) == {"VLLM_CPU_OMP_THREADS_BIND": "0|1"}
    assert check_device("cpu", 2, {"VLLM_CPU_OMP_THREADS_BIND": "0-7|8-15"}) == {}


# -------------------------------------------------------------------------------------------------- file rules


def test_weight_files_are_recognised():
    for rel in WEIGHTS:
        assert is_weight_file(rel), rel
    for rel in METADATA:
        assert not is_weight_file(rel), rel


def test_every_non_weight_file_is_copied_and_nothing_else(hf_dir, tmp_path):
    assert metadata_files(hf_dir) == sorted(METADATA)
    out = tmp_path / "out"
    out.mkdir()
    assert copy_metadata(hf_dir, out) == sorted(METADATA)
    copied = {p.relative_to(out).as_posix(): p.read_bytes() for p in out.rglob("*") if p.is_file()}
    assert copied == METADATA


def test_rank_files_needs_exactly_every_rank(tmp_path):
    _write_tree(
        tmp_path,
        {
            "model-rank-0-part-0.safetensors": b"",
            "model-rank-0-part-1.safetensors": b"",
            "model-rank-1-part-0.safetensors": b"",
            "config.json": b"{}",
        },
    )
    assert rank_files(tmp_path, 2) == {
        0: ["model-rank-0-part-0.safetensors", "model-rank-0-part-1.safetensors"],
        1: ["model-rank-1-part-0.safetensors"],
    }
    with pytest.raises(ShardingFailed, match=r"missing ranks \[2, 3\]"):
        rank_files(tmp_path, 4)
    (tmp_path / "model-rank-2-part-0.safetensors").write_bytes(b"")
    with pytest.raises(ShardingFailed, match=r"unexpected ranks \[2\]"):
        rank_files(tmp_path, 2)


def test_save_audit_names_the_emptied_tensors():
    torch = pytest.importorskip("torch")

    class Worker(SaveAudit):
        def __init__(self, model):
            self.model_runner = type("Runner", (), {"model": model})()

    model = torch.nn.Sequential(torch.nn.Linear(4, 4), torch.nn.Linear(4, 4))
    assert Worker(model).coldstart_emptied_tensors() == []
    model[1].weight = torch.nn.Parameter(torch.empty(0), requires_grad=False)  # what vLLM's CPU backend does
    assert Worker(model).coldstart_emptied_tensors() == ["1.weight"]


# --------------------------------------------------------------------------- the round trip, vLLM child faked


def test_shards_the_staged_checkpoint_and_stages_a_sealed_folder(lab, capsys, hf_dir, tmp_path, monkeypatch):
    store = LocalStore(tmp_path / "store")
    upload_dir(store, "models/tiny", hf_dir, show_progress=False)
    fake = FakeSave()
    monkeypatch.setattr(sharding, "run_save", fake)

    rc, out, err = _shard(capsys, "tiny", "--tp", "2", "--device", "cpu", "--no-progress")

    assert rc == 0, err
    [(job, env)] = fake.jobs
    assert (job.tp_size, job.device, env) == (2, "cpu", {"VLLM_CPU_OMP_THREADS_BIND": "0|1"})
    assert fake.sources == [{*METADATA, *WEIGHTS, MANIFEST_NAME, "coldstart-checkpoint.json"}]  # the download
    manifest = read_manifest(store, "sharded/tiny/tp2")
    assert sorted(f.path for f in manifest.files) == sorted(
        [*METADATA, "model-rank-0-part-0.safetensors", "model-rank-1-part-0.safetensors"]
    )
    assert (tmp_path / "store" / "sharded/tiny/tp2/original/params.json").read_bytes() == METADATA[
        "original/params.json"
    ]
    assert f"{tmp_path / 'store' / 'sharded/tiny/tp2'}" in out and "2 rank files" in out
    # Without --keep-local the local copy goes once staged, and no download or work folder is left behind.
    assert list((lab / "sharded" / "tiny").iterdir()) == []


def test_keep_local_and_no_upload_keep_the_folder(lab, capsys, hf_dir, tmp_path, monkeypatch):
    monkeypatch.setattr(sharding, "run_save", FakeSave())
    out_dir = tmp_path / "out"
    monkeypatch.setattr(sharding, "usable_cpus", lambda: [0, 1, 2, 3])
    rc, _, err = _shard(
        capsys, "tiny", "--tp", "4", "--device", "cpu", "--from", str(hf_dir), "--no-upload", "--out", str(out_dir)
    )
    assert rc == 0, err
    assert len(list(out_dir.glob("model-rank-*"))) == 4
    assert not (tmp_path / "store").exists()  # --no-upload never opens the store
    rc, _, err = _shard(
        capsys,
        "tiny",
        "--tp",
        "4",
        "--device",
        "cpu",
        "--from",
        str(hf_dir),
        "--keep-local",
        "--out",
        str(out_dir),
        "--overwrite",
        "--no-progress",
    )
    assert rc == 0, err
    assert (out_dir / "config.json").is_file()
    assert (tmp_path / "store" / "sharded/tiny/tp4" / MANIFEST_NAME).is_file()


def test_a_rank_that_saved_nothing_fails_and_stages_nothing(lab, capsys, hf_dir, tmp_path, monkeypatch):
    monkeypatch.setattr(sharding, "run_save", FakeSave(ranks=[0]))
    out_dir = tmp_path / "out"
    rc, _, err = _shard(capsys, "tiny", "--tp", "2", "--device", "cpu", "--from", str(hf_dir), "--out", str(out_dir))
    assert rc == 1
    assert "missing ranks [1]" in err
    assert not out_dir.exists()
    assert list(tmp_path.glob(".out.tmp-*")) == []
    assert not (tmp_path / "store" / "sharded").exists()


def test_child_exit_codes_map_to_clear_errors(monkeypatch):
    job = ShardJob(model_dir="/m", out_dir="/o", tp_size=2, device="cpu")
    for rc, exc in ((3, InvalidShardRequest), (4, ShardingFailed), (1, ShardingFailed)):
        monkeypatch.setattr(sharding.subprocess, "run", lambda *a, rc=rc, **k: subprocess.CompletedProcess(a, rc))
        with pytest.raises(exc):
            sharding.run_save(job, {})
    assert ShardJob.from_json(job.to_json()) == job


# ---------------------------------------------------------------------------------------------- e2e, real vLLM


def _vllm_cpu_installed() -> bool:
    try:
        importlib.metadata.version("vllm-cpu")
    except importlib.metadata.PackageNotFoundError:
        return False
    return True


def _cuda_gpus() -> int:
    try:
        import torch
    except ImportError:
        return 0
    return torch.cuda.device_count()


@pytest.fixture
def staged_tiny(tmp_path: Path) -> dict[str, str]:
    """The tiny checkpoint staged in a private store; the env a user's shell would have."""
    from coldstart.storage.checkpoints import write_checkpoint

    ckpt = write_checkpoint(get_model("tiny"), tmp_path / "ckpt", progress=False).path
    upload_dir(LocalStore(tmp_path / "store"), "models/tiny", ckpt, show_progress=False)
    return {
        **os.environ,
        "COLDSTART_HOME": str(tmp_path / "home"),
        "COLDSTART_STORE": str(tmp_path / "store"),
        "HF_HUB_OFFLINE": "1",
        "VLLM_CPU_KVCACHE_SPACE": "1",
    }


def _run(args: list[str], env: dict[str, str], timeout_s: float) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, *args], cwd=REPO, env=env, capture_output=True, text=True, timeout=timeout_s, check=False
    )


# A worker extension that empties one linear weight before the audit looks: the engine state vLLM's CPU backend
# leaves on CPUs where it packs weights for oneDNN, made on purpose so the refusal is tested on every CPU.
_EMPTYING_EXTENSION = """
import torch

from coldstart.storage.sharding_cpu import KeepWeightsSaveAudit


class EmptyOneWeight(KeepWeightsSaveAudit):
    def coldstart_emptied_tensors(self):
        layer = self.model_runner.model.model.layers[0].mlp.down_proj
        layer.weight = torch.nn.Parameter(torch.empty(0), requires_grad=False)
        return super().coldstart_emptied_tensors()
"""


@pytest.mark.e2e
@pytest.mark.skipif(not _vllm_cpu_installed(), reason="needs vllm-cpu 0.25.1")
def test_cpu_tp2_refuses_state_with_emptied_weights_and_stages_nothing(staged_tiny, tmp_path, monkeypatch, capfd):
    (tmp_path / "ext").mkdir()
    (tmp_path / "ext" / "emptying_ext.py").write_text(_EMPTYING_EXTENSION)
    for key, value in staged_tiny.items():
        monkeypatch.setenv(key, value)
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([str(tmp_path / "ext"), str(REPO)]))
    store = LocalStore(tmp_path / "store")
    with pytest.raises(ShardingFailed, match="cannot save usable sharded state"):
        sharding.shard(
            get_model("tiny"),
            2,
            store=store,
            from_dir=None,
            out_dir=tmp_path / "out",
            device="cpu",
            job_overrides={"worker_extension_cls": "emptying_ext.EmptyOneWeight"},
            show_progress=False,
        )
    errors = [line for line in capfd.readouterr().err.splitlines() if line.startswith("error:")]
    # Each rank empties its own slice of layer 0's down_proj: one name.
    assert errors == [
        "error: the engine holds 1 empty weight tensors (e.g. model.layers.0.mlp.down_proj.weight); "
        "save_sharded_state would leave them out and the sharded_state loader would reject the "
        "result with 'Missing keys'"
    ], errors
    assert not (tmp_path / "store" / "sharded").exists()
    assert not (tmp_path / "out").exists()
    assert list(tmp_path.glob(".out.tmp-*")) == []


_GREEDY_SCRIPT = """
import json, sys

if __name__ == "__main__":
    from vllm import LLM, SamplingParams

    kwargs = {"load_format": sys.argv[2]} if sys.argv[2] != "auto" else {}
    llm = LLM(model=sys.argv[1], tensor_parallel_size=2, enforce_eager=True, max_model_len=256,
              kv_cache_memory_bytes=256 * 1024**2, **kwargs)
    out = llm.generate(["The capital of France is"], SamplingParams(max_tokens=4, temperature=0))[0].outputs[0]
    print("RESULT " + json.dumps({"token_ids": list(out.token_ids)}))
"""


@pytest.mark.e2e
@pytest.mark.skipif(not _vllm_cpu_installed(), reason="needs vllm-cpu 0.25.1")
def test_cpu_tp2_shards_stages_and_loads_back_with_the_same_tokens(staged_tiny, tmp_path):
    """On every CPU: the saved state is complete (sharding_cpu keeps the weights vLLM's CPU backend may drop),
    staged, and an engine loading it greedily decodes the same tokens as one loading the checkpoint."""
    proc = _run(
        ["-m", "coldstart", "shard", "tiny", "--tp", "2", "--device", "cpu", "--no-progress"],
        staged_tiny,
        timeout_s=300,
    )
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-4000:]
    staged = tmp_path / "store" / "sharded" / "tiny" / "tp2"
    paths = {f["path"] for f in json.loads((staged / MANIFEST_NAME).read_text())["files"]}
    assert {"model-rank-0-part-0.safetensors", "model-rank-1-part-0.safetensors", "config.json"} <= paths

    script = tmp_path / "greedy.py"
    script.write_text(_GREEDY_SCRIPT)
    # The binding the shard tool gives its own TP2 engine (vLLM's "auto" refuses TP>1 on one NUMA node).
    env = {**staged_tiny, "VLLM_CPU_OMP_THREADS_BIND": sharding.cpu_thread_binding(sharding.usable_cpus(), 2)}
    tokens = {}
    for name, folder, load_format in (
        ("checkpoint", tmp_path / "store" / "models" / "tiny", "auto"),
        ("sharded", staged, "sharded_state"),
    ):
        proc = _run([str(script), str(folder), load_format], env, timeout_s=300)
        assert proc.returncode == 0, f"{name}:\n{proc.stdout[-2000:]}{proc.stderr[-4000:]}"
        [line] = [x for x in proc.stdout.splitlines() if x.startswith("RESULT ")]
        tokens[name] = json.loads(line[len("RESULT ") :])["token_ids"]
    assert len(tokens["checkpoint"]) == 4
    assert tokens["sharded"] == tokens["checkpoint"]


_LOAD_SCRIPT = """
import json, sys

if __name__ == "__main__":
    from vllm import LLM, SamplingParams

    llm = LLM(model=sys.argv[1], load_format=sys.argv[2], tensor_parallel_size=2, enforce_eager=True,
              max_model_len=256, gpu_memory_utilization=0.3)
    out = llm.generate(["The"], SamplingParams(max_tokens=1, temperature=0))[0].outputs[0]
    print("RESULT " + json.dumps({"token_ids": list(out.token_ids)}))
"""


@pytest.mark.e2e
@pytest.mark.skipif(
    _cuda_gpus() < 2,
    reason="needs 2 CUDA GPUs (the CPU path is test_cpu_tp2_shards_stages_and_loads_back_with_the_same_tokens)",
)
def test_gpu_tp2_shards_stages_and_loads_back(staged_tiny, tmp_path):
    proc = _run(
        [
            "-m",
            "coldstart",
            "shard",
            "tiny",
            "--tp",
            "2",
            "--no-progress",
            "--keep-local",
            "--out",
            str(tmp_path / "out"),
            "--gpu-memory-utilization",
            "0.3",
        ],
        staged_tiny,
        timeout_s=600,
    )
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-4000:]
    staged = tmp_path / "store" / "sharded" / "tiny" / "tp2"
    manifest = json.loads((staged / MANIFEST_NAME).read_text())
    paths = {f["path"] for f in manifest["files"]}
    assert {
        "model-rank-0-part-0.safetensors",
        "model-rank-1-part-0.safetensors",
        "config.json",
        "generation_config.json",
        "tokenizer.json",
        "tokenizer_config.json",
        "chat_template.jinja",
    } <= paths
    assert not any(
        p.startswith("model-rank-2") or p == "model.safetensors" or p.startswith("coldstart-checkpoint") for p in paths
    )
    assert (tmp_path / "out" / "model-rank-1-part-0.safetensors").is_file()  # --keep-local

    script = tmp_path / "load.py"
    script.write_text(_LOAD_SCRIPT)
    for load_format in ("sharded_state", "runai_streamer_sharded"):  # what the experiments load with
        proc = _run([str(script), str(staged), load_format], staged_tiny, timeout_s=600)
        assert proc.returncode == 0, f"{load_format}:\n{proc.stdout[-2000:]}{proc.stderr[-4000:]}"
        [line] = [x for x in proc.stdout.splitlines() if x.startswith("RESULT ")]
        assert len(json.loads(line[len("RESULT ") :])["token_ids"]) == 1
