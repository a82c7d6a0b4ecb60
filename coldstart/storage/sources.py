"""Where a run's weights come from, resolved and checked before Ray starts.

A bad store URI, a missing bucket, missing credentials or a model that was never staged must fail here,
in a second, with a clear message: not ten minutes later inside a replica. A user model (a Hub id or a local
folder, ``load_user_model``) gets its ``config.json`` read here too, before the registry makes a Model of it.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from coldstart.registry import MODELS, Experiment, Model, UserModelError, model_from_hf_config

# "org/name", as the Hub spells repository ids.
_HUB_ID_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*/[A-Za-z0-9._-]+$")


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

    Streaming experiments always read the store (plain checkpoint, or per-rank sharded state); a user model's
    own folder (``Model.local_dir``) serves every other experiment. The check never probes the Hub: machines
    without a network must not wait on it. With ``HF_HUB_OFFLINE`` set, a Hub model must already be in the local
    Hugging Face cache.
    """
    env = os.environ if env is None else env
    if model.local_dir is not None:
        if local_weights is not None:
            raise SourceError(f"{model.name!r} is served from {model.local_dir} already; drop --weights")
        if source == "hub":
            raise SourceError(
                f"{model.name!r} is a local folder ({model.local_dir}), not a Hub model; drop --source hub"
            )
        # A streaming experiment (or --source store) reads the staged copy, as for any model; else the folder.
        if not exp.weights_from_store and source != "store":
            return WeightsLocation(str(model.local_dir), "local")
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
        return _hub_location(model, exp, env)

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
        return _hub_location(
            model, exp, env, unstaged_in=f"{store.uri} holds no complete checkpoint of it at {prefix}/"
        )
    what = "sharded state" if exp.sharded_state else "checkpoint"
    how = _how_to_stage(model, exp)
    raise SourceError(f"the store {store.uri} holds no complete {what} of {model.name!r} at {prefix}/; stage it: {how}")


def _how_to_stage(model: Model, exp: Experiment) -> str:
    folder = model.local_dir or "DIR"
    if not exp.sharded_state:
        return f"`python -m coldstart stage put {model.name} --from {folder}`"
    if model.name in MODELS:
        return f"`python -m coldstart shard {model.name}` (needs {model.tp_size} GPUs)"
    # The shard tool knows registry names only: a user model's state is made with vLLM's own example.
    return (
        f"vLLM's examples/offline_inference/save_sharded_state.py at TP{model.tp_size} into DIR, then "
        f"`python -m coldstart stage put {model.name} --tp {model.tp_size} --from DIR`"
    )


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


def _hub_location(
    model: Model, exp: Experiment, env: Mapping[str, str], unstaged_in: str | None = None
) -> WeightsLocation:
    """The Hub id, unless the Hub is switched off and the model is not cached: then vLLM would fail inside
    the replica's engine-config task, Serve would retry the replica three times and mark it UNHEALTHY, and
    the pending request would wait out the ingress timeout (seen on an H200: 10 minutes for nothing).

    An experiment that skips Ray LLM's node-init task (the task that downloads a Hub id) gets the model's
    snapshot in the Hugging Face cache instead, when every weight file is there: the weights are on the node.
    """
    assert model.hub_id is not None
    if exp.skip_node_init and (snapshot := cached_snapshot(model.hub_id, env)) is not None:
        return WeightsLocation(str(snapshot), "local")
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


def cached_snapshot(hub_id: str, env: Mapping[str, str]) -> Path | None:
    """The Hugging Face cache's snapshot folder of ``hub_id`` when it holds every weight file, else None."""
    from huggingface_hub import try_to_load_from_cache

    config = try_to_load_from_cache(hub_id, "config.json", cache_dir=hf_hub_cache_dir(env))
    if not isinstance(config, str):
        return None
    snapshot = Path(config).parent
    index = snapshot / "model.safetensors.index.json"
    # A download cut short leaves some shards out: only a whole checkpoint counts as on the node.
    files = set(json.loads(index.read_text())["weight_map"].values()) if index.is_file() else {"model.safetensors"}
    return snapshot if all((snapshot / f).is_file() for f in files) else None


def is_local_source(source: str) -> bool:
    """A folder rather than a Hub id: it exists here, or it is spelled as a path (absolute, ./, ../, ~)."""
    return source in (".", "..") or source.startswith(("/", "./", "../", "~")) or Path(source).expanduser().exists()


def read_config_file(folder: Path) -> dict[str, Any]:
    """A Hugging Face folder's ``config.json`` body; UserModelError when the folder is not one."""
    if not folder.is_dir():
        raise UserModelError(f"{folder} is not a folder on this node")
    path = folder / "config.json"
    if not path.is_file():
        raise UserModelError(f"{folder} is not a Hugging Face model folder (no config.json)")
    return _config_body(path.read_bytes(), str(path))


def read_config_json(path: Path) -> dict[str, Any]:
    """A ``config.json`` body from the file itself or from the Hugging Face folder that holds it."""
    if path.is_dir():
        return read_config_file(path)
    if not path.is_file():
        raise UserModelError(f"{path}: no such file (give a config.json or the folder that holds one)")
    return _config_body(path.read_bytes(), str(path))


def _config_body(data: bytes, where: str) -> dict[str, Any]:
    try:
        body = json.loads(data)
    except ValueError as exc:
        raise UserModelError(f"{where} is not JSON: {exc}") from None
    if not isinstance(body, dict):
        raise UserModelError(f"{where} holds {type(body).__name__}, not a config object")
    return body


def load_user_model(
    name: str,
    source: str,
    *,
    tp_size: int,
    store_uri: str | None,
    endpoint_url: str | None = None,
    env: Mapping[str, str] | None = None,
) -> Model:
    """The registry Model of a user's Hub id or local folder, named ``name``, at ``tp_size``.

    A folder's ``config.json`` is read in place. A Hub id's comes from the Hugging Face cache, else from the
    store's staged copy (``stage put NAME``: offline machines), else from the Hub unless HF_HUB_OFFLINE is set.
    Raises UserModelError for bad input (no config.json, an unknown architecture, a TP that does not divide)
    and SourceError when a Hub id's config.json is nowhere to be read.
    """
    env = os.environ if env is None else env
    if is_local_source(source):
        folder = Path(source).expanduser().resolve()
        return model_from_hf_config(name, read_config_file(folder), tp_size=tp_size, local_dir=folder)
    if not _HUB_ID_RE.match(source):
        raise UserModelError(f"{source!r} is neither a folder on this node nor a Hub id (org/name)")
    config = _hub_config(source, name, store_uri=store_uri, endpoint_url=endpoint_url, env=env)
    return model_from_hf_config(name, config, tp_size=tp_size, hub_id=source)


def _hub_config(
    hub_id: str, name: str, *, store_uri: str | None, endpoint_url: str | None, env: Mapping[str, str]
) -> dict[str, Any]:
    from huggingface_hub import try_to_load_from_cache

    cache_dir = hf_hub_cache_dir(env)
    cached = try_to_load_from_cache(hub_id, "config.json", cache_dir=cache_dir)
    if isinstance(cached, str):
        return _config_body(Path(cached).read_bytes(), cached)
    looked = [f"the Hugging Face cache {cache_dir}"]
    if store_uri:
        from coldstart.storage import staging
        from coldstart.storage.store import open_store

        store = open_store(store_uri, endpoint_url=endpoint_url)
        key = f"{staging.model_prefix(name)}/config.json"
        if store.exists(key):
            return _config_body(store.get_bytes(key), store.url_for(key))
        looked.append(f"the store {store.uri} ({key})")
    if env.get("HF_HUB_OFFLINE", "").upper() in _TRUE:
        raise SourceError(
            f"HF_HUB_OFFLINE is set and {hub_id}'s config.json is in neither {' nor '.join(looked)}. To fix: "
            f"stage the model (`python -m coldstart stage put {name} --from DIR`), pass its folder as --model-id, "
            "or unset HF_HUB_OFFLINE"
        )
    from huggingface_hub import hf_hub_download
    from huggingface_hub.errors import EntryNotFoundError, HfHubHTTPError

    try:
        # Only the config (a few kB): the weights are fetched, or not, by the experiment being measured.
        path = hf_hub_download(hub_id, "config.json", cache_dir=cache_dir)
    except (HfHubHTTPError, EntryNotFoundError) as exc:
        raise SourceError(f"cannot read {hub_id}'s config.json from the Hub ({type(exc).__name__}: {exc})") from exc
    return _config_body(Path(path).read_bytes(), path)
