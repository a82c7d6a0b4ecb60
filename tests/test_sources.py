"""Where weights come from: the Hub id is only handed to vLLM when vLLM can actually open it."""

from __future__ import annotations

from pathlib import Path

import pytest

from coldstart.registry import get_experiment, get_model
from coldstart.storage.sources import SourceError, hf_hub_cache_dir, resolve_weights

HUB_ID = get_model("llama-3-8b-tp2").hub_id


def _cache_snapshot(hub_cache: Path, repo_id: str) -> None:
    """The layout huggingface_hub writes: refs/main names the snapshot that holds the files."""
    repo = hub_cache / f"models--{repo_id.replace('/', '--')}"
    (repo / "refs").mkdir(parents=True)
    (repo / "refs" / "main").write_text("0123abcd")
    (repo / "snapshots" / "0123abcd").mkdir(parents=True)
    (repo / "snapshots" / "0123abcd" / "config.json").write_text("{}")


def _resolve(tmp_path: Path, env: dict[str, str], experiment: str = "baseline"):
    return resolve_weights(
        get_model("llama-3-8b-tp2"), get_experiment(experiment), store_uri=str(tmp_path / "empty-store"), env=env
    )


def test_offline_and_uncached_fails_before_ray_naming_the_store_and_the_fix(tmp_path):
    pytest.importorskip("huggingface_hub")  # the offline check asks its cache
    # The H200 run this reproduces: baseline before the TP2 checkpoint was staged, HF_HUB_OFFLINE=1.
    env = {"HF_HUB_OFFLINE": "1", "HF_HOME": str(tmp_path / "hf")}
    with pytest.raises(SourceError) as info:
        _resolve(tmp_path, env)
    msg = str(info.value)
    assert HUB_ID in msg and "HF_HUB_OFFLINE" in msg
    assert "holds no complete checkpoint" in msg and "empty-store" in msg
    assert "python -m coldstart stage put llama-3-8b-tp2" in msg


def test_offline_with_the_model_in_the_hf_cache_uses_the_hub_id(tmp_path):
    pytest.importorskip("huggingface_hub")  # the offline check asks its cache
    env = {"HF_HUB_OFFLINE": "1", "HF_HOME": str(tmp_path / "hf")}
    _cache_snapshot(hf_hub_cache_dir(env), HUB_ID)
    loc = _resolve(tmp_path, env)
    assert (loc.uri, loc.kind) == (HUB_ID, "hub")


def test_online_hands_the_hub_id_over_without_looking_anywhere(tmp_path):
    loc = _resolve(tmp_path, {"HF_HOME": str(tmp_path / "hf")})
    assert (loc.uri, loc.kind) == (HUB_ID, "hub")


def test_explicit_hub_source_is_checked_too(tmp_path):
    pytest.importorskip("huggingface_hub")  # the offline check asks its cache
    env = {"HF_HUB_OFFLINE": "true", "HF_HOME": str(tmp_path / "hf")}
    with pytest.raises(SourceError, match="not in the Hugging Face cache"):
        resolve_weights(get_model("llama-3-8b"), get_experiment("baseline"), store_uri=None, env=env)


def test_hub_cache_dir_follows_huggingface_hub_order(tmp_path):
    assert hf_hub_cache_dir({"HF_HUB_CACHE": str(tmp_path / "c"), "HF_HOME": "/x"}) == tmp_path / "c"
    assert hf_hub_cache_dir({"HF_HOME": str(tmp_path / "h")}) == tmp_path / "h" / "hub"
    assert hf_hub_cache_dir({"XDG_CACHE_HOME": str(tmp_path)}) == tmp_path / "huggingface" / "hub"
