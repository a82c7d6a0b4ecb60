"""The chain of milestones from the request to the first token, the segments between them, and their categories."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass


@dataclass(frozen=True)
class SegmentDef:
    name: str
    label: str
    category: str
    end: str  # the milestone that ends it; it starts at the previous milestone in CHAIN


# Milestones in causal order: each one cannot happen before the previous one.
CHAIN: tuple[str, ...] = (
    "client_send",
    "upscale",
    "replica_node_init_start",
    "node_fetch_start",
    "engine_start",
    "engine_config_done",
    "engine_core_start",
    "workers_start",
    "model_loaded",
    "torch_compile_done",
    "profiling_done",
    "kv_cache_ready",
    "cuda_graphs_done",
    "engine_init_done",
    "engine_ready",
    "replica_ready",
    "first_token",
)

RESTORE_SEGMENT = "seg_compile_cache_restore_s"
# The replica starts Serve gave up on before the one that served (its constructor raised, its process or node
# died): from the first of them to the start that served, carved out of whatever holds it.
FAILED_STARTS_SEGMENT = "seg_failed_starts_s"
UNATTRIBUTED = "unattributed_s"


@dataclass(frozen=True)
class Category:
    """One slice of a stacked bar: every table, legend and colour of a category comes from here."""

    name: str  # key in rows and tables (``cat_<name>_s``)
    label: str  # legend text
    short: str  # column heading of the Markdown / terminal tables
    colour: str  # fill of its bar slice and Gantt row (Tableau 10)


# The categories a stacked bar shows, bottom up: the ancestor's (weights download, model load, torch.compile,
# CUDA graphs, KV cache/profiling) plus what this lab measures instead of a constant overhead.
CATEGORIES: tuple[Category, ...] = (
    Category("ray_serve", "Ray/Serve overhead (measured)", "Ray/Serve", "#4e79a7"),
    Category("failed_starts", "failed replica starts (Serve retried)", "failed", "#ff9da7"),
    Category("engine_startup", "vLLM engine start (config, processes, imports)", "engine start", "#a0cbe8"),
    Category("weights_download", "weights download", "weights", "#f28e2b"),
    Category("compile_cache_restore", "compile-cache restore", "cc restore", "#ffbe7d"),
    Category("model_load", "model load", "load", "#59a14f"),
    Category("torch_compile", "torch.compile", "compile", "#e15759"),
    Category("kv_cache_profiling", "KV cache / profiling", "KV/prof.", "#b07aa1"),
    Category("cuda_graphs", "CUDA graphs", "graphs", "#edc948"),
    Category("warmup_ready", "warmup + engine ready (unlogged)", "warmup", "#9c755f"),
    Category("unattributed", "unattributed / not measured", "unattr.", "#d4d0cc"),
)
CATEGORY: Mapping[str, Category] = {c.name: c for c in CATEGORIES}

# The segments, in chain order; the restore is carved out of the weights fetch (it runs inside that task).
SEGMENTS: tuple[SegmentDef, ...] = (
    SegmentDef("seg_autoscale_reaction_s", "autoscaler reaction (request → upscale)", "ray_serve", "upscale"),
    SegmentDef(
        FAILED_STARTS_SEGMENT, "failed replica starts (Serve retried)", "failed_starts", "replica_node_init_start"
    ),
    SegmentDef(
        "seg_replica_actor_start_s",
        "replica actor start (placement, process, imports)",
        "ray_serve",
        "replica_node_init_start",
    ),
    SegmentDef("seg_node_task_start_s", "node-init task start (Ray task, imports)", "ray_serve", "node_fetch_start"),
    SegmentDef(RESTORE_SEGMENT, "compile-cache restore", "compile_cache_restore", "engine_start"),
    SegmentDef("seg_weights_fetch_s", "weights fetch (node init)", "weights_download", "engine_start"),
    SegmentDef("seg_engine_config_s", "engine config (→ executor chosen)", "engine_startup", "engine_config_done"),
    SegmentDef("seg_engine_process_spawn_s", "engine-core process spawn", "engine_startup", "engine_core_start"),
    SegmentDef("seg_worker_start_s", "worker start (spawn, imports, dist. init)", "engine_startup", "workers_start"),
    SegmentDef("seg_model_load_s", "model load", "model_load", "model_loaded"),
    SegmentDef("seg_torch_compile_s", "torch.compile (or cache load)", "torch_compile", "torch_compile_done"),
    SegmentDef("seg_profiling_s", "profiling run", "kv_cache_profiling", "profiling_done"),
    SegmentDef("seg_kv_cache_s", "KV cache sizing", "kv_cache_profiling", "kv_cache_ready"),
    SegmentDef("seg_cuda_graph_s", "CUDA graph capture", "cuda_graphs", "cuda_graphs_done"),
    SegmentDef("seg_warmup_s", "warmup after capture (unlogged)", "warmup_ready", "engine_init_done"),
    SegmentDef("seg_engine_ready_s", "engine init done → engine ready", "warmup_ready", "engine_ready"),
    SegmentDef("seg_replica_ready_s", "engine ready → replica RUNNING", "ray_serve", "replica_ready"),
    SegmentDef("seg_first_token_s", "routing + first token", "ray_serve", "first_token"),
)
SEGMENT_NAMES: tuple[str, ...] = tuple(s.name for s in SEGMENTS)
SEGMENT_LABELS: Mapping[str, str] = {**{s.name: s.label for s in SEGMENTS}, UNATTRIBUTED: "unattributed"}
SEGMENT_CATEGORY: Mapping[str, str] = {**{s.name: s.category for s in SEGMENTS}, UNATTRIBUTED: "unattributed"}
CHAIN_SEGMENTS = tuple(s for s in SEGMENTS if s.name not in (RESTORE_SEGMENT, FAILED_STARTS_SEGMENT))
