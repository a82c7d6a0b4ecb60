"""A user's own model in the matrix: ``--models NAME -- --model-id HUB_ID_OR_FOLDER [--tp N]``.

The service args are read for the few options that say which model it is, checked as service.py checks them and
made into a Model by the same ``load_user_model``, before the first cold start: a bad folder or Hub id costs an
error line, not a campaign of failed rows. Then where its weights lie on this node, for a cold run to evict and a
warm one to read into the page cache.
"""

from __future__ import annotations

import argparse
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from coldstart.lab.client import positive_int
from coldstart.registry import MODELS, Model, UserModelError


@dataclass(frozen=True)
class UserModel:
    model: Model  # as load_user_model made it: named by --models, shaped by its config.json
    source: str  # what --model-id said: a Hub id or a folder


@dataclass(frozen=True)
class NodeWeights:
    """Where a user model's weights lie on this node. ``folder`` None: nowhere the lab can name (``why`` says
    so). ``outside_lab``: a folder of the user's, in none of the lab's roots, so clear-cache evicts in it only
    when told it is a weights root."""

    folder: Path | None
    outside_lab: bool = False
    why: str | None = None


def _model_options(service_args: Sequence[str]) -> argparse.Namespace:
    # Only the options that say which model it is and where its config.json is read from; the rest is for
    # service.py alone. No abbreviations: the matrix must not read an option service.py reads as another.
    parser = argparse.ArgumentParser(add_help=False, allow_abbrev=False, exit_on_error=False)
    parser.add_argument("--model-id")
    parser.add_argument("--tp", type=positive_int)
    parser.add_argument("--weights")
    parser.add_argument("--store")
    parser.add_argument("--endpoint-url")
    try:
        given, _rest = parser.parse_known_args(list(service_args))
    except argparse.ArgumentError as exc:
        raise UserModelError(f"the service args after --: {exc}") from None
    return given


def user_model_of(
    models: Sequence[str], service_args: Sequence[str], env: Mapping[str, str] | None = None
) -> UserModel | None:
    """The user's model that ``service_args`` name with ``--model-id``, or None when they name none (then
    ``models`` are registry names). Raises UserModelError for what service.py would refuse (``--tp`` without
    ``--model-id``, a registry name beside it, a folder with no ``config.json``), and whatever
    ``load_user_model`` raises for a Hub id whose config cannot be read (SourceError, StoreError)."""
    given = _model_options(service_args)
    if given.model_id is None:
        if given.tp is not None:
            raise UserModelError("--tp (after --) sets the TP size of a --model-id; a registry model has its own")
        return None
    registry = [m for m in models if m in MODELS]
    if registry:
        raise UserModelError(
            f"--models {' '.join(registry)}: a registry model given with --model-id (after --). --model-id serves "
            "your own model under a name of yours: give that name alone in --models, or drop --model-id"
        )
    if len(models) != 1:
        raise UserModelError(
            f"--model-id (after --) is one model: give its one name in --models, not {len(models)} "
            f"({', '.join(models)})"
        )
    if given.weights is not None:
        raise UserModelError("--weights and --model-id both name the weights; pass the folder as --model-id")
    from coldstart.storage.sources import load_user_model
    from coldstart.storage.store import default_store_uri

    env = os.environ if env is None else env
    model = load_user_model(
        models[0],
        given.model_id,
        tp_size=given.tp or 1,
        # As service.py picks them, so the config.json read here is the one the service reads.
        store_uri=given.store or default_store_uri(),
        endpoint_url=given.endpoint_url or env.get("AWS_ENDPOINT_URL"),
        env=env,
    )
    return UserModel(model, given.model_id)


def node_weights(user: UserModel, env: Mapping[str, str] | None = None) -> NodeWeights:
    """Where ``user``'s weights are on this node now: its folder, or for a Hub id the complete snapshot the Hugging
    Face cache holds (the one ``resolve_weights`` serves from), else nothing named."""
    if user.model.local_dir is not None:
        return NodeWeights(user.model.local_dir, outside_lab=True)
    from coldstart.storage.sources import cached_snapshot, hf_hub_cache_dir

    env = os.environ if env is None else env
    hub_id = user.model.hub_id or user.source
    snapshot = cached_snapshot(hub_id, env)
    if snapshot is None:
        where = hf_hub_cache_dir(env)
        return NodeWeights(None, why=f"no complete snapshot of {hub_id} in the Hugging Face cache {where}")
    # A snapshot's files are links into the repo's blobs/: the repo's folder (models--org--name) holds the bytes.
    return NodeWeights(snapshot.parent.parent)


def cleared_root_holding(folder: Path, clear_only: Sequence[str], env: Mapping[str, str] | None = None) -> str | None:
    """The cache root holding ``folder`` that the matrix's clear empties (all roots, or ``clear_only``), as
    "name (path)", or None. Compared resolved: the clear removes what the path leads to."""
    from coldstart.lab.caches import cache_roots, select_roots

    roots = select_roots(clear_only, env) if clear_only else cache_roots(env)
    real = folder.resolve()
    for root in roots:
        top = root.path.resolve()
        if real == top or top in real.parents:
            return f"{root.name} ({root.path})"
    return None
