"""``python service.py <model> <experiment>``: deploy one (model, experiment) with zero replicas and wait.

Exit codes: 0 clean shutdown, 1 runtime/store error, 2 bad input (nothing was started).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from coldstart import paths
from coldstart.analysis import events
from coldstart.analysis.results import nvidia_gpus
from coldstart.fastpath.node_setup import NodeSetup
from coldstart.lab.client import positive_int
from coldstart.lab.llm_config import (
    OPENAI_APP,
    ConfigError,
    RunOptions,
    build_app_args,
    build_llm_config,
    levers_for,
    node_env,
    node_setup,
    ray_system_config,
    runai_s3_env,
)
from coldstart.registry import (
    EXPERIMENTS,
    MODELS,
    SCENARIOS,
    InvalidPairError,
    Model,
    UnknownNameError,
    UserModelError,
    get_experiment,
    get_model,
    get_scenario,
    with_max_replicas,
)
from coldstart.storage.sources import SourceError, load_user_model, resolve_weights
from coldstart.storage.store import InvalidStoreURI, StoreError, default_store_uri


def engine_device() -> str:
    """ "cuda" when an NVIDIA GPU answers, else "cpu": the provenance's own probe (nvidia-smi), not the compile
    cache's (NVML, else torch: importing torch here costs ~10 s), which also needs the compute capability."""
    gpu, _driver = nvidia_gpus()
    return "cuda" if gpu else "cpu"


def _run_id_arg(text: str) -> str:
    try:
        return paths.check_run_id(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def add_cli_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "model", help=f"registry model ({', '.join(MODELS)}), or the name of your own model given with --model-id"
    )
    parser.add_argument("experiment", help=f"experiment: {', '.join(EXPERIMENTS)}")
    parser.add_argument(
        "--store",
        default=None,
        help="object store URI: s3://bucket/prefix or a folder "
        "(default: $COLDSTART_STORE, else a local store under the lab's home)",
    )
    parser.add_argument("--endpoint-url", default=None, help="S3-compatible endpoint (default: $AWS_ENDPOINT_URL)")
    parser.add_argument(
        "--source",
        choices=("auto", "hub", "store"),
        default="auto",
        help="where non-streamed weights come from (auto: the store if staged there, else the Hub)",
    )
    parser.add_argument("--weights", type=Path, default=None, help="serve this local HF folder instead")
    parser.add_argument(
        "--model-id",
        default=None,
        metavar="HUB_ID_OR_PATH",
        help="your own model instead of a registry one: a Hub id (org/name) or a local Hugging Face folder; "
        "its shape comes from its config.json",
    )
    parser.add_argument("--tp", type=positive_int, default=None, help="tensor parallel size of --model-id (default 1)")
    parser.add_argument("--device", choices=("auto", "cuda", "cpu"), default="auto")
    parser.add_argument(
        "--cold-ingress",
        action="store_true",
        help="let the OpenAI ingress scale to zero too (Ray's default with min_replicas=0)",
    )
    parser.add_argument("--max-model-len", type=int, default=None)
    parser.add_argument("--enforce-eager", action="store_true", help="skip torch.compile and CUDA graphs")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8000)
    parser.add_argument(
        "--ray-address",
        default=os.environ.get("RAY_ADDRESS"),
        help="join this Ray cluster instead of starting one (default: $RAY_ADDRESS)",
    )
    parser.add_argument("--num-cpus", type=int, default=None, help="CPUs of a local Ray (default: all)")
    parser.add_argument(
        "--proxy-location",
        choices=("HeadOnly", "EveryNode"),
        default=None,
        help="where Serve runs its HTTP proxies when this lab starts Serve (default: Serve's own); HeadOnly where "
        "several raylets share one machine and so one port",
    )
    parser.add_argument(
        "--give-up-after-s",
        type=float,
        default=30.0,
        help="exit (status 1) once Serve has held the app DEPLOY_FAILED/UNHEALTHY this long",
    )
    parser.add_argument(
        "--give-up-unschedulable-after-s",
        type=float,
        default=600.0,
        help="exit (status 1) once a replica has found no node with room for it this long after Serve said so "
        "(its node died and no other fits; a request waits with it); raise it where an autoscaler adds nodes",
    )
    parser.add_argument(
        "--prestart-timeout-s",
        type=float,
        default=600.0,
        help="fast path: longest wait for the prestarted Ray workers to import vLLM before "
        "the service says it is ready",
    )
    parser.add_argument(
        "--scenario",
        default="single",
        help=f"the traffic the deployment is configured for (autoscaling, sleep mode): {', '.join(SCENARIOS)}",
    )
    parser.add_argument(
        "--max-replicas",
        type=positive_int,
        default=None,
        help="replace the scenario's max_replicas (e.g. one replica per GPU of the node)",
    )
    parser.add_argument("--run-id", default=None, type=_run_id_arg)
    parser.add_argument(
        "--ready-file",
        type=Path,
        default=None,
        help="write {url, run_id, log} here once the app is deployed (for the runner); removed when the service "
        "stops, or by the next service on the node when this one was killed",
    )
    parser.add_argument("--dry-run", action="store_true", help="print the Serve YAML and start nothing")
    parser.add_argument(
        "--node-setup",
        choices=("shell", "json", "rayservice"),
        default=None,
        help="print what every node of a cluster needs for this experiment (ray start lines, the record as JSON, "
        "or a KubeRay RayService) and start nothing",
    )
    parser.add_argument(
        "--publish-compile-cache",
        action="store_true",
        help="start nothing: pack this node's engine compile caches (left by an earlier run of "
        "the same model and experiment) and publish them to the store under this config's "
        "fingerprint",
    )


def publish_compile_cache(app_args: dict, node_env: dict[str, str]) -> int:
    """Capture the pinned engine caches and publish them under the fingerprint the replica hook computes
    from the very same config (so the keys agree by construction)."""
    import tempfile

    from coldstart import compile_cache as cc
    from coldstart.lab.replica_hooks import engine_model_path
    from coldstart.storage.store import open_store

    cfg = app_args["llm_configs"][0]
    hook = cfg["callback_config"]["callback_kwargs"]
    if not hook.get("compile_cache_store"):
        users = ", ".join(name for name, exp in EXPERIMENTS.items() if exp.compile_cache)
        print(f"error: this experiment does not use a compile cache (try one of: {users})", file=sys.stderr)
        return 2
    # The replica's env: the config's runtime_env, or the node's where a fast-path config leaves it empty.
    env = cc.worker_environ(
        {**os.environ, **node_env, **cfg["runtime_env"].get("env_vars", {})},
        ray_gpu_workers=cc.ray_executor_gpu_workers(cfg.get("placement_group_config")),
    )

    fingerprint = cc.fingerprint_for_engine(
        hook["model_name"], engine_model_path(cfg["model_loading_config"]), cfg["engine_kwargs"], environ=env
    )
    vllm_root, inductor_dir, triton_dir = cc.default_cache_dirs(env)
    try:
        store = open_store(hook["compile_cache_store"])
        with tempfile.TemporaryDirectory() as tmp:
            archive = Path(tmp) / "compile-cache.tar"
            manifest = cc.capture(vllm_root, inductor_dir, triton_dir, archive, fingerprint=fingerprint)
            try:
                cc.check_engine_marker(vllm_root, fingerprint)  # after capture: its "nothing here" comes first
            except cc.OtherConfigCaches as other:
                # A resumed campaign step publishes after a later run left another config's caches: when this
                # key's entry is already good there is nothing of this config here to add, so nothing to refuse.
                prefix = cc.entry_prefix(fingerprint)
                if not cc.verify_entry(store, prefix).ok:
                    raise
                print(f"compile cache publish: SKIPPED {prefix} already published; nothing added ({other})")
                return 0
            result = cc.publish(store, fingerprint, archive, manifest)
    except (cc.CompileCacheError, StoreError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(
        f"compile cache publish: {result.status} {result.key} ({manifest.size_bytes / 1e6:.1f} MB, "
        f"{manifest.file_count} files) {result.detail or ''}"
    )
    return 0 if result.status in (cc.PublishStatus.SUCCESS, cc.PublishStatus.SKIPPED) else 1


@dataclass(frozen=True)
class Prepared:
    """One deployment, decided before Ray starts."""

    app_args: dict[str, Any]
    app_name: str
    run_id: str
    # Fast path: environment and Ray system config the node's workers need (a local Ray gets both here).
    node_env: dict[str, str] = field(default_factory=dict)
    ray_system_config: dict[str, Any] = field(default_factory=dict)
    app_builder: str = OPENAI_APP  # import path of the Serve app builder
    node_setup: NodeSetup | None = None  # what every node needs (fast-path experiments)
    replica_gpus: int = 0  # GPUs one replica takes on one node (0 on CPU)
    fast_path: bool = False  # the experiment pulls fast-path levers (private Ray/vLLM hooks: checked first)


def prepare(args: argparse.Namespace) -> Prepared:
    """Everything that can fail before Ray: names, pair, store, weights."""
    store_uri = args.store or default_store_uri()
    endpoint = args.endpoint_url or os.environ.get("AWS_ENDPOINT_URL")
    experiment = get_experiment(args.experiment)  # a bad name fails before a user model's config is read
    model = _model(args, store_uri, endpoint)
    exp = experiment.for_model(model)
    scenario = with_max_replicas(get_scenario(args.scenario), args.max_replicas)
    device = engine_device() if args.device == "auto" else args.device
    weights = resolve_weights(
        model, exp, store_uri=store_uri, endpoint_url=endpoint, source=args.source, local_weights=args.weights
    )
    env = paths.engine_cache_env()
    if weights.kind == "s3" or store_uri.startswith("s3://"):
        env.update(runai_s3_env({**os.environ, **({"AWS_ENDPOINT_URL": endpoint} if endpoint else {})}))
    if device == "cpu":
        env.setdefault("VLLM_CPU_KVCACHE_SPACE", "1")
    run_id = args.run_id or paths.new_run_id()
    opts = RunOptions(
        weights=weights,
        device=device,
        store_uri=store_uri,
        ingress_min_replicas=0 if args.cold_ingress else 1,
        max_model_len=args.max_model_len,
        enforce_eager=args.enforce_eager,
        env=env,
        compile_cache_root=env["VLLM_CACHE_ROOT"],
        run_id=run_id,
        autoscaling=scenario.autoscaling,
        queueing=scenario.queueing,
        sleep_mode=scenario.sleep_wake,
    )
    llm_config = build_llm_config(model, exp, opts)
    setup = node_setup(model, exp, opts) if exp.prestart_workers else None
    return Prepared(
        build_app_args(model, exp, llm_config, opts),
        f"coldstart-{model.name}",
        run_id,
        node_env=node_env(model, exp, opts),
        ray_system_config=ray_system_config(exp),
        app_builder=opts.app_builder,
        node_setup=setup,
        replica_gpus=model.tp_size if device == "cuda" else 0,
        fast_path=levers_for(exp).any,
    )


def _print_node_setup(prepared: Prepared, fmt: str) -> int:
    setup = prepared.node_setup
    if setup is None:
        print(f"{prepared.app_name}: this experiment needs nothing of the nodes beyond the package", file=sys.stderr)
        return 0
    if fmt == "json":
        print(setup.to_json())
    elif fmt == "shell":
        print(setup.shell_script(), end="")
    else:
        from coldstart.lab.configs import dump_yaml
        from coldstart.lab.llm_config import serve_yaml_config

        serve_config = serve_yaml_config(prepared.app_name, prepared.app_args, import_path=prepared.app_builder)
        print(dump_yaml(setup.kuberay_rayservice(name=prepared.app_name, serve_config=serve_config)), end="")
    return 0


def _check_fast_path_compat() -> None:
    """The fast path overrides private Ray and vLLM hooks: refuse (exit 2) when the installed ones changed."""
    from coldstart.fastpath.guard import FastPathIncompatible, require_fast_path_compat

    try:
        require_fast_path_compat()
    except FastPathIncompatible as exc:
        raise ConfigError(str(exc)) from None


def _model(args: argparse.Namespace, store_uri: str, endpoint: str | None) -> Model:
    """The registry's model, or with --model-id the user's, named by the positional (as stage put names it)."""
    if args.model_id is None:
        if args.tp is not None:
            raise UserModelError("--tp sets the TP size of a --model-id; a registry model has its own")
        return get_model(args.model)
    if args.weights is not None:
        raise UserModelError("--weights and --model-id both name the weights; pass the folder as --model-id")
    return load_user_model(args.model, args.model_id, tp_size=args.tp or 1, store_uri=store_uri, endpoint_url=endpoint)


def main(args: argparse.Namespace) -> int:
    # The lab reads every process's own lines, and Ray's driver folds identical ones from several processes into
    # one "[repeated Nx across cluster]": the prestarted workers' `worker_preloaded` lines would be lost and the
    # wait for them would run to its timeout (seen on CPU, 2026-11-30). Read once, when Ray is first imported.
    os.environ["RAY_DEDUP_LOGS"] = "0"
    try:
        prepared = prepare(args)
    except (UnknownNameError, InvalidPairError, ConfigError, UserModelError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except InvalidStoreURI as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except (SourceError, StoreError) as exc:
        # Store and credential problems surface here, before Ray starts, with nothing to clean up.
        print(f"error: {exc}", file=sys.stderr)
        return 1
    app_args, app_name = prepared.app_args, prepared.app_name
    if args.publish_compile_cache:
        return publish_compile_cache(app_args, prepared.node_env)
    if args.node_setup:
        return _print_node_setup(prepared, args.node_setup)
    if args.dry_run:
        from coldstart.lab.llm_config import serve_yaml_config

        print(yaml.safe_dump(serve_yaml_config(app_name, app_args, import_path=prepared.app_builder), sort_keys=False))
        if prepared.node_setup is not None:
            print("# The node setup (docs/deploy-on-a-cluster.md):")
            print("".join(f"# {line}\n" for line in prepared.node_setup.shell_script().splitlines()), end="")
        return 0

    if prepared.fast_path:
        try:
            _check_fast_path_compat()
        except ConfigError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 2
    from coldstart.lab.leftovers import RunLedger, clear_dead_runs
    from coldstart.lab.serve import PortInUse, ensure_port_free, hold_port

    # What a service killed without its cleanup (SIGKILL, an OOM kill) left on this node goes first: its Ray
    # processes would hold the port and the memory, its ready file would say a dead service is ready.
    try:
        clear_dead_runs()
    except OSError as exc:  # the records could not be read: what a dead run holds (a port) is refused below
        print(f"warning: could not look for what killed services left: {exc}", file=sys.stderr)
    with contextlib.ExitStack() as held:
        if not args.ray_address:
            # Local Ray only: on a cluster the proxies listen on the cluster's nodes, not here. The port is
            # taken first, then checked for a leftover listener: a lab starting beside us cannot slip in.
            try:
                held.enter_context(hold_port(args.port))
                ensure_port_free(args.host, args.port)
            except PortInUse as exc:
                print(f"error: {exc}", file=sys.stderr)
                return 1
        try:
            held.enter_context(
                RunLedger(
                    run_id=prepared.run_id,
                    port=args.port,
                    ready_file=args.ready_file,
                    local_ray=not args.ray_address,
                )
            )
        except OSError as exc:
            # Without its record a killed run could not be cleaned up after: refused before anything starts.
            print(f"error: cannot write this service's record: {exc}", file=sys.stderr)
            return 1
        return _serve(args, prepared)


def _serve(args: argparse.Namespace, prepared: Prepared) -> int:
    """Ray, the app, the ready file, the watch: everything after the checks, with the port held."""
    paths.apply_engine_cache_env()
    # A local Ray's raylet, and so every worker it starts, inherits this process's environment.
    if not args.ray_address:
        os.environ.update(prepared.node_env)
    log_path = paths.run_log_path(args.model, args.experiment, prepared.run_id)
    num_cpus = args.num_cpus
    prestart = prepared.node_setup is not None and prepared.node_setup.prestarts
    if prestart and not args.ray_address:
        from coldstart.lab.fastpath.prestart import prestart_num_cpus

        num_cpus = prestart_num_cpus(args.num_cpus, os.cpu_count())
    try:
        return _serve_teed(args, prepared, log_path, num_cpus=num_cpus, prestart=prestart)
    except ClusterNotReady as exc:
        # After the tee: a refusal belongs on the caller's standard error (the run's log has it as an event).
        print(f"error: {exc}", file=sys.stderr, flush=True)
        return 2


def _serve_teed(
    args: argparse.Namespace, prepared: Prepared, log_path: Path, *, num_cpus: int | None, prestart: bool
) -> int:
    from coldstart.lab.serve import serve_app, tee_output, watch_app

    app_args, app_name, run_id = prepared.app_args, prepared.app_name, prepared.run_id
    with tee_output(log_path):
        events.emit("service_start", run_id=run_id, model=args.model, experiment=args.experiment, app_args=app_args)
        try:
            with serve_app(
                app_args,
                app_name=app_name,
                host=args.host,
                port=args.port,
                ray_address=args.ray_address,
                num_cpus=num_cpus,
                system_config=prepared.ray_system_config,
                app_builder=prepared.app_builder,
                proxy_location=args.proxy_location,
                # The fast path needs the package on the nodes: a job runtime_env keeps replicas off prestarted
                # workers (a worker is given only to work whose runtime_env equals its own).
                ship_package=not prestart,
                preflight=(lambda: _cluster_preflight(prepared)) if prestart and args.ray_address else None,
            ) as url:
                keeper = None
                if prestart:
                    keeper = _await_prestarted_workers(args, prepared)
                print(
                    f"serving {args.model} ({args.experiment}) at {url}/v1 with zero replicas; "
                    f"log: {log_path}; Ctrl-C to stop",
                    flush=True,
                )
                if args.ready_file:
                    ready = {"url": url, "run_id": run_id, "log": str(log_path), "config": app_args}
                    # Whole or not at all: a runner polls for the file and reads it the moment it appears.
                    partial = args.ready_file.with_name(f".{args.ready_file.name}.partial")
                    partial.write_text(json.dumps(ready))
                    os.replace(partial, args.ready_file)
                # Serve stops starting replicas once a constructor failed three times; a waiting client
                # would only learn that from the ingress timeout. Shutting down drops its connection now.
                reason = watch_app(
                    app_name,
                    grace_s=args.give_up_after_s,
                    unschedulable_s=args.give_up_unschedulable_after_s,
                    between_polls=keeper,
                )
                events.emit("serve_app_failed", app=app_name, reason=reason)
                print(f"error: {reason}; shutting down", file=sys.stderr, flush=True)
                return 1
        except ClusterNotReady as exc:
            events.emit("cluster_not_ready", reason=str(exc))
            raise
        except KeyboardInterrupt:
            print("shutting down", flush=True)
    return 0


class ClusterNotReady(RuntimeError):
    """The cluster lacks what the fast path needs of it; the message says what to change (exit 2)."""


def _cluster_preflight(prepared: Prepared) -> None:
    """Before Serve is touched on a user's cluster: the head's system config and this job's runtime_env."""
    import ray
    from ray._private.state import state

    assert prepared.node_setup is not None, "only fast-path experiments are checked"
    wanted = prepared.node_setup
    system_config = state.get_system_config()
    missing = [
        k for k, v in wanted.system_config.items() if k != "num_workers_soft_limit" and system_config.get(k) != v
    ]
    if missing:
        raise ClusterNotReady(
            f"the cluster's head was started without {', '.join(missing)} in --system-config (it has "
            f"{json.dumps({k: system_config.get(k) for k in missing})}); restart the head with "
            f"--system-config='{wanted.system_config_json()}' (raylets read it from the head's GCS). "
            "`coldstart serve MODEL EXPERIMENT --dry-run` prints the whole node setup"
        )
    job_env = ray.get_runtime_context().runtime_env
    if job_env:
        raise ClusterNotReady(
            f"this job has a runtime_env ({sorted(job_env)}): Ray gives a prestarted worker only to work whose "
            "runtime_env equals its own (none), so replicas would wait for fresh workers; install the coldstart "
            "package in every node's Python instead and run without a job runtime_env"
        )


def _await_prestarted_workers(args: argparse.Namespace, prepared: Prepared) -> Any:
    """Wait until every replica node holds idle preloaded workers; returns the pool keeper for the watch loop."""
    from coldstart.lab.fastpath.prestart import NodesNotReady, PoolKeeper, wait_for_ready_nodes
    from coldstart.lab.node_status import cluster_views

    keeper = PoolKeeper(prepared.app_name, gpus=prepared.replica_gpus)
    try:
        wait_for_ready_nodes(
            gpus=prepared.replica_gpus,
            timeout_s=args.prestart_timeout_s,
            views=cluster_views,
            fill=keeper.fill if keeper.owns_controller() else None,
        )
    except NodesNotReady as exc:
        raise ClusterNotReady(str(exc)) from None
    return keeper.tick
