# Two commands on a fresh machine:
#   make demo   one real cold start of the smallest model from zero replicas (GPU if present, else CPU),
#               from the embedded local store; its result row and graphs
#   make test   the test suite (unit + integration + real CPU cold starts), as CI runs it
#   make test-fast  ruff + mypy + every test but the real cold starts (-m "not e2e"); needs only `.[analysis,test]`
#               (tests that need torch, Ray, vLLM or huggingface_hub skip and say why); another venv:
#               make test-fast PY=/path/to/venv/bin/python
#   make lint   ruff + mypy only (mypy's config: pyproject.toml [tool.mypy]; same result with or without the
#               serving stack installed)
PY := .venv/bin/python

.PHONY: setup demo test test-fast lint
setup:
	bash scripts/setup.sh

demo: setup
	$(PY) -m coldstart checkpoint tiny
	$(PY) -m coldstart stage put tiny --from "$$($(PY) -c 'from coldstart.storage.checkpoints import default_checkpoint_dir as d; print(d("tiny"))')"
	$(PY) -m coldstart matrix --models tiny --experiments baseline --repeats 1 --campaign demo \
	    --clear-only vllm inductor triton inductor-headers coldstart-models
	$(PY) -m analysis

test: setup
	$(PY) -m ruff check .
	$(PY) -m ruff format --check .
	$(PY) -m mypy
	$(PY) -m pytest -p no:cacheprovider -rs

test-fast:
	$(PY) -m ruff check .
	$(PY) -m ruff format --check .
	$(PY) -m mypy
	$(PY) -m pytest -p no:cacheprovider -m "not e2e" -rs

lint:
	$(PY) -m ruff check .
	$(PY) -m ruff format --check .
	$(PY) -m mypy
