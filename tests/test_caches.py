"""Cache clearing on temp trees: every root is pointed into tmp_path through the environment."""

from __future__ import annotations

import argparse
import ctypes
import ctypes.util
import mmap
import os
import subprocess
import sys
from pathlib import Path

import pytest

from coldstart.lab import caches
from coldstart.lab.caches import (
    CacheRoot,
    OutsideCacheRootError,
    UnknownRootError,
    cache_roots,
    clear,
    cli,
    drop_caches,
    evict_page_cache,
    page_cache,
    select_roots,
)


def _base_env(tmp_path: Path) -> dict[str, str]:
    return {
        "HOME": str(tmp_path / "home"),
        "XDG_CACHE_HOME": str(tmp_path / "xdg"),
        "TMPDIR": str(tmp_path / "tmp"),
        "USER": "tester",
        "COLDSTART_HOME": str(tmp_path / "cs"),
    }


@pytest.fixture
def env(tmp_path: Path) -> dict[str, str]:
    for sub in ("home", "xdg", "tmp"):
        (tmp_path / sub).mkdir()
    return _base_env(tmp_path)


@pytest.fixture
def os_env(env: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    """The same tree through os.environ, for the CLI; drop_caches aimed at a scratch file, never /proc."""
    for name in caches.ENV_VARS:
        monkeypatch.delenv(name, raising=False)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setattr(page_cache, "DROP_CACHES_PATH", Path(env["TMPDIR"]) / "drop_caches")
    return env


def _roots(env: dict[str, str]) -> dict[str, Path]:
    return {r.name: r.path for r in cache_roots(env)}


def _write(path: Path, size: int) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"x" * size)
    return path


def _populate(env: dict[str, str]) -> dict[str, int]:
    """A few files in every root; returns the bytes written per root (nested roots counted as themselves)."""
    roots = _roots(env)
    sizes = {}
    for i, (name, path) in enumerate(sorted(roots.items())):
        size = 100 + i
        _write(path / "sub" / "deeper" / f"{name}.bin", size)
        _write(path / "top.bin", size)
        sizes[name] = 2 * size
    return sizes


def test_defaults_follow_home_xdg_tmp_and_user(tmp_path, monkeypatch):
    monkeypatch.setenv("HOME", str(tmp_path / "home"))  # paths.coldstart_home reads Path.home()
    env = {"HOME": str(tmp_path / "home"), "TMPDIR": str(tmp_path / "tmp"), "USER": "a/b"}
    home, tmp = tmp_path / "home", tmp_path / "tmp"
    roots = _roots(env)
    assert roots["hf-hub"] == home / ".cache" / "huggingface" / "hub"
    assert roots["hf-xet"] == home / ".cache" / "huggingface" / "xet"
    assert roots["vllm"] == home / ".cache" / "coldstart" / "engine-cache" / "vllm"
    assert roots["vllm-default"] == home / ".cache" / "vllm"
    assert roots["runai-streamer"] == home / ".cache" / "vllm" / "assets" / "model_streamer"
    assert roots["inductor"] == home / ".cache" / "coldstart" / "engine-cache" / "inductor"
    assert roots["inductor-default"] == tmp / "torchinductor_a_b"  # torch sanitises "/" in user names
    assert roots["inductor-headers"] == tmp / "torchinductor_a_b" / "precompiled_headers"
    assert roots["triton"] == home / ".cache" / "coldstart" / "engine-cache" / "triton"
    assert roots["triton-default"] == home / ".triton" / "cache"
    assert roots["torch-kernels"] == home / ".cache" / "torch" / "kernels"
    assert roots["cuda-jit"] == home / ".nv" / "ComputeCache"
    assert roots["flashinfer"] == home / ".cache" / "flashinfer"
    assert roots["coldstart-models"] == home / ".cache" / "coldstart" / "models"


def test_env_vars_move_each_root(env, tmp_path):
    t = tmp_path
    env.update(
        HF_HOME=str(t / "hf"),
        VLLM_CACHE_ROOT=str(t / "v"),
        VLLM_ASSETS_CACHE=str(t / "assets"),
        TORCHINDUCTOR_CACHE_DIR=str(t / "ind"),
        TRITON_CACHE_DIR=str(t / "tri"),
        PYTORCH_KERNEL_CACHE_PATH=str(t / "tk"),
        CUDA_CACHE_PATH=str(t / "nv"),
        FLASHINFER_WORKSPACE_BASE=str(t / "fi"),
    )
    roots = _roots(env)
    assert roots["hf-hub"] == t / "hf" / "hub"
    assert roots["hf-xet"] == t / "hf" / "xet"
    assert roots["vllm"] == t / "v"
    assert roots["vllm-default"] == t / "xdg" / "vllm"
    assert roots["runai-streamer"] == t / "assets" / "model_streamer"
    assert roots["inductor"] == t / "ind"
    # precompiled_headers ignores TORCHINDUCTOR_CACHE_DIR: it stays in <tmp>/torchinductor_<user>.
    assert roots["inductor-headers"] == t / "tmp" / "torchinductor_tester" / "precompiled_headers"
    assert roots["triton"] == t / "tri"
    assert roots["torch-kernels"] == t / "tk"
    assert roots["cuda-jit"] == t / "nv"
    assert roots["flashinfer"] == t / "fi" / ".cache" / "flashinfer"
    assert roots["coldstart-models"] == t / "cs" / "models"
    env.update(HF_HUB_CACHE=str(t / "hub2"), HF_XET_CACHE=str(t / "xet2"), TRITON_HOME=str(t / "th"))
    roots = _roots(env)
    assert (roots["hf-hub"], roots["hf-xet"]) == (t / "hub2", t / "xet2")
    assert roots["triton-default"] == t / "th" / ".triton" / "cache"


def test_a_default_twin_equal_to_its_pinned_root_is_listed_once(env, tmp_path):
    env["VLLM_CACHE_ROOT"] = str(tmp_path / "xdg" / "vllm")
    names = [r.name for r in cache_roots(env)]
    assert "vllm" in names and "vllm-default" not in names
    assert len(names) == len(set(names))


def test_clear_removes_contents_keeps_roots_and_reports_bytes(env, tmp_path):
    sizes = _populate(env)
    outside = _write(tmp_path / "home" / "keep.txt", 7)
    report = clear(cache_roots(env), env=env)
    assert report.raise_if_failed() is report
    by_name = {r.name: r for r in report.roots}
    assert {n: r.size_bytes for n, r in by_name.items()} == sizes
    assert all(r.files == 2 and r.removed and r.existed for r in by_name.values())
    assert report.size_bytes == sum(sizes.values())
    for path in _roots(env).values():
        # Only folders leading to a nested root (vllm-default/assets/model_streamer) may be left.
        assert path.is_dir() and [p for p in path.rglob("*") if not p.is_dir()] == [], path
    assert outside.read_bytes() == b"x" * 7


def test_dry_run_removes_nothing_and_reports_what_would_go(env):
    sizes = _populate(env)
    report = clear(cache_roots(env), dry_run=True, env=env)
    assert report.ok and report.dry_run
    assert {r.name: r.size_bytes for r in report.roots} == sizes
    assert not any(r.removed for r in report.roots)
    for name, path in _roots(env).items():
        assert (path / "top.bin").is_file(), name


def test_nested_selected_roots_are_counted_once(env):
    roots = _roots(env)
    _write(roots["runai-streamer"] / "abc" / "config.json", 10)
    _write(roots["vllm-default"] / "modelinfos" / "x.json", 5)
    report = clear(select_roots(["vllm-default", "runai-streamer"], env), env=env)
    assert {r.name: r.size_bytes for r in report.roots} == {"vllm-default": 5, "runai-streamer": 10}
    assert roots["runai-streamer"].is_dir() and not any(roots["runai-streamer"].iterdir())
    assert not (roots["vllm-default"] / "modelinfos").exists()


def test_clearing_an_outer_root_alone_takes_the_nested_one_too(env):
    roots = _roots(env)
    _write(roots["runai-streamer"] / "abc" / "config.json", 10)
    report = clear(select_roots(["vllm-default"], env), env=env)
    assert report.roots[0].size_bytes == 10
    assert not roots["runai-streamer"].exists()


def test_refuses_paths_outside_the_known_roots(env, tmp_path):
    victim = _write(tmp_path / "home" / "precious" / "data.bin", 3)
    with pytest.raises(OutsideCacheRootError, match="not inside a known cache root"):
        clear([CacheRoot("evil", victim.parent, "")], env=env)
    # A refusal comes before anything is touched, even for the valid roots listed with it.
    hub_file = _write(_roots(env)["hf-hub"] / "models--x" / "a", 4)
    with pytest.raises(OutsideCacheRootError):
        clear([*select_roots(["hf-hub"], env), CacheRoot("evil", victim.parent, "")], env=env)
    assert victim.is_file() and hub_file.is_file()
    # Inside a known root is fine: one model's folder in the hub.
    report = clear([CacheRoot("one-model", hub_file.parent, "")], env=env)
    assert report.ok and not hub_file.exists()


def test_refuses_a_root_moved_onto_home(env, tmp_path):
    env["TRITON_CACHE_DIR"] = env["HOME"]
    victim = _write(tmp_path / "home" / "thesis.tex", 3)
    with pytest.raises(OutsideCacheRootError, match="home"):
        clear(select_roots(["triton"], env), env=env)
    assert victim.is_file()


def test_symlinks_are_removed_never_followed(env, tmp_path):
    root = _roots(env)["hf-hub"]
    outside_dir = tmp_path / "elsewhere"
    outside_file = _write(outside_dir / "big.bin", 1000)
    _write(outside_dir / "sub" / "more.bin", 10)
    (root / "snapshots").mkdir(parents=True)
    (root / "snapshots" / "dir-link").symlink_to(outside_dir, target_is_directory=True)
    (root / "file-link").symlink_to(outside_file)
    (root / "dangling").symlink_to(tmp_path / "nothing-here")
    _write(root / "real.bin", 5)

    dry = clear(select_roots(["hf-hub"], env), dry_run=True, env=env)
    assert (dry.roots[0].files, dry.roots[0].size_bytes) == (4, 5)  # links count as entries, not bytes

    report = clear(select_roots(["hf-hub"], env), env=env)
    assert report.ok, report.errors()
    assert list(root.iterdir()) == []
    assert outside_file.read_bytes() == b"x" * 1000
    assert (outside_dir / "sub" / "more.bin").is_file()


def test_a_symlinked_root_is_refused_not_followed(env, tmp_path):
    target = tmp_path / "big-disk" / "hub"
    blob = _write(target / "blob", 9)
    hub = _roots(env)["hf-hub"]
    hub.parent.mkdir(parents=True)
    hub.symlink_to(target, target_is_directory=True)
    with pytest.raises(OutsideCacheRootError, match="symlink"):
        clear(select_roots(["hf-hub"], env), env=env)
    # A folder inside a root reached through a symlink is refused the same way.
    with pytest.raises(OutsideCacheRootError, match="symlink"):
        clear([CacheRoot("one-model", hub / "models--x", "")], env=env)
    assert hub.is_symlink() and blob.read_bytes() == b"x" * 9


@pytest.mark.parametrize("where", ["/etc", "/usr/lib", "/", "/var", "/home"])
def test_a_root_moved_onto_a_system_folder_is_refused_even_in_a_dry_run(env, where):
    env["VLLM_CACHE_ROOT"] = where
    with pytest.raises(OutsideCacheRootError, match="refusing"):
        clear(select_roots(["vllm"], env), dry_run=True, env=env)


def test_a_root_in_the_repo_or_holding_it_is_refused(env):
    assert (caches.REPO_ROOT / "coldstart" / "lab" / "caches").is_dir()  # the checkout, not a folder in it
    for where in (caches.REPO_ROOT / "results", caches.REPO_ROOT, caches.REPO_ROOT.parent):
        env["TRITON_CACHE_DIR"] = str(where)
        # Which refusal depends on where the checkout lies: in a clone under /tmp the repo's parent (/tmp) also
        # holds the test's home folder, and that check speaks first. Either way it must be refused.
        with pytest.raises(OutsideCacheRootError, match=r"repo|shared|system|holds it"):
            clear(select_roots(["triton"], env), dry_run=True, env=env)


def test_a_root_outside_home_tmp_and_cache_folders_needs_allow_root(env):
    env["VLLM_CACHE_ROOT"] = "/opt/coldstart-test-scratch"  # never created: the check comes first
    with pytest.raises(OutsideCacheRootError, match="--allow-root /opt/coldstart-test-scratch"):
        clear(select_roots(["vllm"], env), dry_run=True, env=env)
    report = clear(select_roots(["vllm"], env), dry_run=True, env=env, allowed_roots=["/opt/coldstart-test-scratch"])
    assert report.ok and report.roots[0].note == "absent"
    env["VLLM_CACHE_ROOT"] = "/opt/hf_cache/vllm"  # named like a cache: plausible without the flag
    assert clear(select_roots(["vllm"], env), dry_run=True, env=env).ok
    with pytest.raises(OutsideCacheRootError, match="system folder"):
        clear([], env=env, allowed_roots=["/etc"])


def test_every_default_root_is_plausible(env):
    report = clear(cache_roots(env), dry_run=True, env=env)
    assert report.ok


def test_the_test_session_isolates_every_root(cache_isolation_base):
    """conftest moves every root, those that default to $HOME included, so no test can clear a real cache."""
    roots = [*cache_roots(), *caches.data_roots()]
    assert len(roots) > 10
    outside = [f"{r.name}={r.path}" for r in roots if cache_isolation_base not in r.path.parents]
    assert outside == []


def test_isolated_env_moves_every_root_off_the_real_home(tmp_path):
    real = {**os.environ, "HOME": "/home/someone", "HF_HUB_CACHE": "/home/someone/hub", "COLDSTART_HOME": "/x/cs"}
    moved = caches.isolated_env(tmp_path)
    env = {k: v for k, v in real.items() if k not in moved} | {k: v for k, v in moved.items() if v is not None}
    for r in [*cache_roots(env), *caches.data_roots(env)]:
        assert tmp_path in r.path.parents, r


def _make_unremovable(monkeypatch: pytest.MonkeyPatch, stuck: Path) -> None:
    """Tests may run as root, where chmod stops nothing: inject the failure instead."""
    real_unlink = os.unlink

    def unlink(path, *args, **kwargs):
        if Path(path) == stuck:
            raise PermissionError(13, "Permission denied", str(path))
        return real_unlink(path, *args, **kwargs)

    monkeypatch.setattr(os, "unlink", unlink)


def test_unremovable_entry_makes_the_report_not_ok(env, monkeypatch):
    roots = _roots(env)
    stuck = _write(roots["vllm"] / "torch_compile_cache" / "stuck.bin", 11)
    other = _write(roots["vllm"] / "torch_compile_cache" / "fine.bin", 3)
    _write(roots["triton"] / "k.bin", 2)
    _make_unremovable(monkeypatch, stuck)
    report = clear(select_roots(["vllm", "triton"], env), env=env)
    assert not report.ok
    vllm, triton = report.roots
    assert vllm.error and "stuck.bin" in vllm.error and not vllm.removed
    assert triton.error is None and triton.removed
    assert stuck.exists() and not other.exists()  # one failure does not stop the rest
    assert any("stuck.bin" in e for e in report.errors())
    with pytest.raises(caches.CacheClearError, match=r"stuck\.bin"):
        report.raise_if_failed()


def test_a_root_that_is_a_file_is_an_error(env):
    _write(_roots(env)["cuda-jit"], 4)
    report = clear(select_roots(["cuda-jit"], env), env=env)
    assert not report.ok and "not a folder" in (report.roots[0].error or "")


def test_absent_roots_are_fine(env):
    report = clear(cache_roots(env), env=env)
    assert report.ok
    assert not any(r.existed for r in report.roots)


def test_select_roots_rejects_unknown_names_listing_valid_ones(env):
    with pytest.raises(UnknownRootError, match="valid roots: hf-hub"):
        select_roots(["vllm", "nope"], env)


def _resident_pages(path: Path) -> int:
    """Pages of ``path`` in the page cache, via mincore(2) on a private mapping of it."""
    libc = ctypes.CDLL(ctypes.util.find_library("c"), use_errno=True)
    libc.mincore.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.POINTER(ctypes.c_ubyte)]
    size = path.stat().st_size
    pages = (size + mmap.PAGESIZE - 1) // mmap.PAGESIZE
    vec = (ctypes.c_ubyte * pages)()
    # ACCESS_COPY gives a writable (copy-on-write) view whose address ctypes can take; untouched pages
    # still report the file's page cache.
    with open(path, "rb") as f, mmap.mmap(f.fileno(), size, access=mmap.ACCESS_COPY) as mm:
        buf = (ctypes.c_char * size).from_buffer(mm)
        try:
            if libc.mincore(ctypes.addressof(buf), size, vec) != 0:
                raise OSError(ctypes.get_errno(), "mincore failed")
        finally:
            del buf  # the buffer export must be gone before the mapping closes
    return sum(v & 1 for v in vec)


def _fs_type(path: Path) -> str:
    best, fstype = "", ""
    for line in Path("/proc/mounts").read_text().splitlines():
        _dev, mount_point, kind, *_ = line.split()
        if str(path).startswith(mount_point) and len(mount_point) > len(best):
            best, fstype = mount_point, kind
    return fstype


def test_evict_page_cache_drops_the_pages_of_real_files(env, tmp_path):
    if _fs_type(tmp_path) in ("tmpfs", "ramfs"):
        pytest.skip("on tmpfs the page cache is the storage: nothing can be evicted")
    size = 4 * 1024 * 1024
    ckpt = Path(env["COLDSTART_HOME"]) / "checkpoints" / "tiny"
    data = _write(ckpt / "model.safetensors", size)
    _write(ckpt / "config.json", 100)
    (ckpt / "link.json").symlink_to(ckpt / "config.json")
    data.read_bytes()
    pages = size // mmap.PAGESIZE
    assert _resident_pages(data) == pages  # freshly written and read: all cached
    report = evict_page_cache([ckpt], env=env)
    assert report.ok, report.errors
    assert (report.files, report.size_bytes) == (3, size + 200)
    assert report.drop_caches is None
    assert _resident_pages(data) == 0
    assert data.read_bytes() == b"x" * size  # kept on disk


def test_evict_reports_missing_paths(env):
    report = evict_page_cache([Path(env["COLDSTART_HOME"]) / "missing"], env=env)
    assert not report.ok and "missing" in report.errors[0]


@pytest.mark.parametrize("victim", ["/etc/passwd", "/", "home", "home/thesis.tex"])
def test_evict_refuses_paths_outside_every_known_root(env, victim, monkeypatch):
    path = Path(env["HOME"]) / victim.removeprefix("home").lstrip("/") if victim.startswith("home") else Path(victim)
    opened = []
    monkeypatch.setattr(os, "open", lambda *a, **k: opened.append(a) or -1)
    with pytest.raises(OutsideCacheRootError, match="refusing"):
        evict_page_cache([path], env=env)
    with pytest.raises(OutsideCacheRootError, match="refusing"):
        clear([], evict_paths=[path], env=env)
    assert opened == []


def test_a_data_root_at_slash_makes_nothing_evictable(env, tmp_path):
    env["COLDSTART_HOME"] = "/"
    victim = _write(tmp_path / "elsewhere" / "file", 3)
    with pytest.raises(OutsideCacheRootError, match="coldstart-home"):
        evict_page_cache([victim], env=env)


def test_evicting_inside_the_repo_is_fine_when_the_store_is_there(env, monkeypatch):
    """Eviction destroys nothing: a local store in the checkout may be evicted (never cleared)."""
    store = caches.REPO_ROOT / "results"
    monkeypatch.setitem(env, "COLDSTART_STORE", str(store))
    report = evict_page_cache([store], env=env, dry_run=True)
    assert report.ok


def test_evict_skips_symlinked_files_pointing_outside_the_roots(env, tmp_path, monkeypatch):
    ckpt = Path(env["COLDSTART_HOME"]) / "checkpoints" / "tiny"
    _write(ckpt / "model.safetensors", 10)
    outside = _write(tmp_path / "elsewhere" / "secret", 5)
    (ckpt / "leak").symlink_to(outside)
    report = evict_page_cache([ckpt], env=env, dry_run=True)
    assert report.ok and (report.files, report.size_bytes) == (1, 10)
    assert len(report.skipped) == 1 and "leak" in report.skipped[0]


def test_drop_caches_writes_when_root_and_never_fails_otherwise(tmp_path, monkeypatch):
    synced = []
    monkeypatch.setattr(os, "sync", lambda: synced.append(True))
    proc = tmp_path / "drop_caches"
    proc.write_text("")
    monkeypatch.setattr(os, "geteuid", lambda: 0)
    result = drop_caches(proc)
    assert result.done and proc.read_text() == "3\n" and synced
    unwritable = drop_caches(tmp_path / "no-such-dir" / "drop_caches")
    assert not unwritable.done and "cannot write" in unwritable.detail
    monkeypatch.setattr(os, "geteuid", lambda: 1000)
    proc.write_text("")
    result = drop_caches(proc)
    assert not result.done and "not root" in result.detail and proc.read_text() == ""


def _cli(*argv: str) -> int:
    return cli.main(cli.add_cli_args(argparse.ArgumentParser()).parse_args(list(argv)))


def test_cli_clears_and_prints_a_table(os_env, capsys, monkeypatch):
    monkeypatch.setattr(os, "geteuid", lambda: 1000)
    sizes = _populate(os_env)
    assert _cli("--all", "--dry-run") == 0
    out = capsys.readouterr().out
    assert "would remove" in out and "hf-hub" in out
    assert (_roots(os_env)["hf-hub"] / "top.bin").exists()
    assert _cli("--only", "triton", "hf-hub") == 0
    assert not (_roots(os_env)["hf-hub"] / "top.bin").exists()
    assert (_roots(os_env)["vllm"] / "top.bin").exists()
    assert sizes["hf-hub"] > 0


def test_cli_does_only_what_it_is_told(os_env, capsys, monkeypatch):
    """--evict alone evicts: it clears no root and leaves the machine's page cache alone."""
    monkeypatch.setattr(os, "geteuid", lambda: 0)
    monkeypatch.setattr(os, "sync", lambda: None)
    proc = Path(os_env["TMPDIR"]) / "drop_caches"
    proc.write_text("")
    _populate(os_env)
    model = _write(Path(os_env["COLDSTART_HOME"]) / "store" / "models" / "tiny" / "model.safetensors", 1024)
    assert _cli("--evict", str(model.parent)) == 0
    out = capsys.readouterr().out
    assert "evicted 1 files" in out and "cache roots" not in out
    assert proc.read_text() == "" and "drop_caches" not in out
    assert all((path / "top.bin").exists() for path in _roots(os_env).values())
    assert model.is_file()
    assert _cli("--evict", str(model.parent), "--drop-caches") == 0
    assert proc.read_text() == "3\n" and "drop_caches: done" in capsys.readouterr().out
    assert all((path / "top.bin").exists() for path in _roots(os_env).values())
    # A bare call does nothing and says what it can do.
    assert _cli() == 2 and "--all" in capsys.readouterr().err


def test_cli_refuses_bad_roots_and_evict_paths_with_exit_2(os_env, capsys, monkeypatch):
    monkeypatch.setenv("VLLM_CACHE_ROOT", "/etc")
    assert _cli("--only", "vllm", "--dry-run") == 2
    assert "system folder" in capsys.readouterr().err
    monkeypatch.delenv("VLLM_CACHE_ROOT")
    assert _cli("--evict", "/etc/passwd") == 2
    assert "refusing to evict" in capsys.readouterr().err
    with pytest.raises(SystemExit):  # argparse keeps the two ways to name roots exclusive
        _cli("--all", "--only", "vllm")


def test_cli_exit_codes_for_bad_input_and_failures(os_env, capsys, monkeypatch):
    assert _cli("--only", "bogus") == 2
    err = capsys.readouterr().err
    assert "bogus" in err and "valid roots" in err and "hf-hub" in err
    stuck = _write(_roots(os_env)["triton"] / "stuck.bin", 1)
    _make_unremovable(monkeypatch, stuck)
    assert _cli("--only", "triton") == 1
    assert "stuck.bin" in capsys.readouterr().err
    monkeypatch.setenv("TRITON_CACHE_DIR", os_env["HOME"])
    assert _cli("--only", "triton") == 2


@pytest.mark.parametrize(
    "entry", [["clear_cache.py"], ["-m", "coldstart", "clear-cache"], ["-m", "coldstart.lab.caches"]]
)
def test_every_entry_point_runs_the_same_tool(os_env, entry):
    _populate(os_env)
    proc = subprocess.run(
        [sys.executable, *entry, "--all", "--dry-run"],
        cwd=caches.REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    assert "would remove" in proc.stdout and "hf-hub" in proc.stdout
    assert all((path / "top.bin").exists() for path in _roots(os_env).values())  # a dry run removes nothing
