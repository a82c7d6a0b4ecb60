"""Where a run's weights come from, resolved and checked before Ray starts.

A bad store URI, a missing bucket, missing credentials or a model that was never staged must fail here,
in a second, with a clear message: not ten minutes later inside a replica.
"""

from __future__ import annotations

from pathlib import Path

from coldstart.llm_config import WeightsLocation
from coldstart.registry import Experiment, Model


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
) -> WeightsLocation:
    """``source``: "auto" (the store when the model is staged there, else the Hub), "hub" or "store".

    Streaming experiments always read the store (plain checkpoint, or per-rank sharded state). The check
    never probes the Hub: machines without a network must not wait on it.
    """
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
            raise SourceError(
                f"{model.name!r} has no Hub checkpoint; write one (`python -m coldstart checkpoint {model.name}`) "
                f"and stage it (`python -m coldstart stage put {model.name} --from DIR`)"
            )
        return WeightsLocation(model.hub_id, "hub")

    from coldstart import staging
    from coldstart.store import open_store

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
        return WeightsLocation(model.hub_id, "hub")
    what = "sharded state" if exp.sharded_state else "checkpoint"
    how = (
        f"`python -m coldstart shard {model.name}` (needs {model.tp_size} GPUs)"
        if exp.sharded_state
        else f"`python -m coldstart stage put {model.name} --from DIR`"
    )
    raise SourceError(f"the store {store.uri} holds no complete {what} of {model.name!r} at {prefix}/; stage it: {how}")
