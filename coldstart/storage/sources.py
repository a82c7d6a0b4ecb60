"""Where a run's weights come from, resolved and checked before Ray starts.

A bad store URI, a missing bucket, missing credentials or a model that was never staged must fail here,
in a second, with a clear message: not ten minutes later inside a replica.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from coldstart.registry import Experiment, Model


@dataclass(frozen=True)
class WeightsLocation:
    """Where one run reads its weights from; resolved before anything starts (see ``resolve_weights``)."""

    # A Hub id, a local folder, or a store URL (s3://bucket/prefix/models/<name> or a local store path).
    uri: str
    kind: str  # "hub" | "local" | "s3"

    @property
    def is_remote(self) -> bool:
        return self.kind == "s3"


class SourceError(RuntimeError):
    """The weights of a run cannot be found; the message says how to stage them."""


def resolve_weights(
    model: Model,
    exp: Experiment,
    *,
    store_uri: str | None,
    endpoint_url: str | None = None,
    source: str = "auto",
    local_weights: Path | None = None,
    env: Mapping[str, str] | None = None,
) -> WeightsLocation:
    """``source``: "auto" (the store when the model is staged there, else the Hub), "hub" or "store".

    Streaming experiments always read the store (plain checkpoint, or per-rank sharded state). The check
    never probes the Hub: machines without a network must not wait on it. With ``HF_HUB_OFFLINE`` set, a Hub
    model must already be in the local Hugging Face cache.
    """
    env = os.environ if env is None else env
    if local_weights is not None:
        if exp.weights_from_store:
            raise SourceError(f"experiment {exp.name!r} streams from the object store; drop --weights")
        if not (local_weights / "config.json").is_file():
            raise SourceError(f"{local_weights} is not a Hugging Face model folder (no config.json)")
        return WeightsLocation(str(local_weights.resolve()), "local")
    if source not in ("auto", "hub", "store"):
        raise SourceError(f"unknown weights source {source!r}; valid sources: auto, hub, store")
    if source == "hub" and exp.weights_from_store:
        raise SourceError(f"experiment {exp.name!r} streams from the object store, not from the Hub")
    if source == "hub" or (source == "auto" and not store_uri):
        if not model.hub_id:
            raise SourceError(f"{model.name!r} has no Hub checkpoint; {_write_and_stage(model)}")
        return _hub_location(model, env)

    from coldstart.storage import staging
    from coldstart.storage.store import open_store

    if not store_uri:
        raise SourceError(f"experiment {exp.name!r} reads {model.name!r} from the object store: no store URI given")
    store = open_store(store_uri, endpoint_url=endpoint_url)
    store.check()
    if exp.sharded_state:
        prefix = staging.sharded_prefix(model.name, model.tp_size)
    else:
        prefix = staging.model_prefix(model.name)
    if staging.is_complete(store, prefix):
        url = store.url_for(prefix)
        return WeightsLocation(url, "s3" if url.startswith("s3://") else "local")
    if source == "auto" and model.hub_id and not exp.weights_from_store:
        return _hub_location(model, env, unstaged_in=f"{store.uri} holds no complete checkpoint of it at {prefix}/")
    what = "sharded state" if exp.sharded_state else "checkpoint"
    how = (
        f"`python -m coldstart shard {model.name}` (needs {model.tp_size} GPUs)"
        if exp.sharded_state
        else f"`python -m coldstart stage put {model.name} --from DIR`"
    )
    raise SourceError(f"the store {store.uri} holds no complete {what} of {model.name!r} at {prefix}/; stage it: {how}")


def _write_and_stage(model: Model) -> str:
    return (
        f"write a checkpoint (`python -m coldstart checkpoint {model.name}`) and stage it "
        f"(`python -m coldstart stage put {model.name} --from DIR`)"
    )


_TRUE = ("1", "ON", "YES", "TRUE")


def hf_hub_cache_dir(env: Mapping[str, str]) -> Path:
    """Where huggingface_hub keeps snapshots (its own lookup order: HF_HUB_CACHE, then HF_HOME/hub)."""
    if env.get("HF_HUB_CACHE"):
        return Path(env["HF_HUB_CACHE"]).expanduser()
    home = env.get("HF_HOME") or Path(env.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "huggingface"
    return Path(home).expanduser() / "hub"


def _hub_location(model: Model, env: Mapping[str, str], unstaged_in: str | None = None) -> WeightsLocation:
    """The Hub id, unless the Hub is switched off and the model is not cached: then vLLM would fail inside
    the replica's engine-config task, Serve would retry the replica three times and mark it UNHEALTHY, and
    the pending request would wait out the ingress timeout (seen on the lent H200: 10 minutes for nothing)."""
    assert model.hub_id is not None
    if env.get("HF_HUB_OFFLINE", "").upper() in _TRUE:
        from huggingface_hub import try_to_load_from_cache

        cache_dir = hf_hub_cache_dir(env)
        if not isinstance(try_to_load_from_cache(model.hub_id, "config.json", cache_dir=cache_dir), str):
            why = f"; {unstaged_in}" if unstaged_in else ""
            raise SourceError(
                f"HF_HUB_OFFLINE is set and {model.hub_id} is not in the Hugging Face cache {cache_dir}{why}. "
                f"To fix: {_write_and_stage(model)}, download the model, or unset HF_HUB_OFFLINE"
            )
    return WeightsLocation(model.hub_id, "hub")
