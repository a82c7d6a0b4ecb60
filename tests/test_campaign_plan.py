"""Campaign plans (campaigns/*.yaml) and their loader (coldstart/lab/campaign/plan.py): every committed plan
is valid against the registry, and a bad plan is refused with every problem named by file, step and field."""

from __future__ import annotations

from pathlib import Path

import pytest

from coldstart.lab.campaign.plan import (
    Checkpoint,
    Matrix,
    PlanError,
    PublishCompileCache,
    S3Server,
    load_plan,
)

PLANS = sorted((Path(__file__).resolve().parents[1] / "campaigns").glob("*.yaml"))


def test_every_committed_plan_loads():
    assert len(PLANS) >= 8
    for path in PLANS:
        plan = load_plan(path)  # raises PlanError naming every problem
        assert plan.steps and all(step.actions for step in plan.steps)


def test_the_plans_hold_every_step_the_lab_has_run_each_once():
    names = [step.name for path in PLANS for step in load_plan(path).steps]
    assert len(names) == len(set(names)), "a step name names one step of one plan"
    assert set(names) >= {
        "tiny-round", "tiny-cache", "tiny-s3", "tiny-cc", "tiny-cc-mismatch", "tiny-mega-miss", "tiny-mega-hit",
        "llama8b-round", "llama8b-baseline", "llama8b-rest", "llama8b-hit", "llama8b-runai",
        "tp2-shard", "tp2-sharded", "tp2-rest", "fast-tp2", "scenarios-8b-x2", "scenarios-8b-x2-default",
        "fast-tiny", "fast-8b-prep", "fast-8b", "fast-8b-cold", "fast-8b-mega", "baseline-8b",
        "ladder-8b", "ladder-8b-rest", "ladder-8b-inrep", "scenarios-8b-fast", "scenarios-8b-cc", "scenarios-tiny",
        "70b-prep", "70b-baseline", "70b-rest", "70b-fast", "70b-shard", "70b-sharded",
        "moe-tiny", "moe-tiny-fp8", "235b-prep", "235b-fast", "235b-stock",
    }  # fmt: skip


def test_a_capture_run_is_published_by_its_step():
    """A capture run exists to fill the store: the same step publishes that model's cache after it."""
    captures = 0
    for path in PLANS:
        for step in load_plan(path).steps:
            for i, action in enumerate(step.actions):
                if isinstance(action, Matrix) and action.capture:
                    captures += 1
                    later = step.actions[i + 1 :]
                    published = {a.model for a in later if isinstance(a, PublishCompileCache)}
                    assert set(action.models) <= published, (path.name, step.name)
    assert captures >= 8


def test_the_fields_are_typed(tmp_path: Path):
    path = tmp_path / "p.yaml"
    path.write_text(
        "description: d\nstore: s3://bucket/p\nrepeats: 2\nsteps:\n  - name: a\n    about: x\n    actions:\n"
        "      - s3_server: {port: 5556}\n"
        "      - checkpoint: {model: tiny, link: true}\n"
        "      - matrix: {models: [tiny], experiments: [fast], node_state: warm, scenarios: [tour], capture: true,"
        " repeats: 1, service_args: [--max-model-len, '256']}\n"
    )
    plan = load_plan(path)
    assert (plan.description, plan.store, plan.repeats, plan.step_names) == ("d", "s3://bucket/p", 2, ("a",))
    s3, ckpt, matrix = plan.step("a").actions
    assert s3 == S3Server(port=5556) and ckpt == Checkpoint("tiny", link=True)
    assert matrix == Matrix(("tiny",), ("fast",), "warm", 1, ("tour",), True, ("--max-model-len", "256"))


def _problems(tmp_path: Path, text: str) -> list[str]:
    path = tmp_path / "bad.yaml"
    path.write_text(text)
    with pytest.raises(PlanError) as info:
        load_plan(path)
    prefix = f"{path}: "
    assert all(p.startswith(prefix) for p in info.value.problems), info.value.problems
    return [p.removeprefix(prefix) for p in info.value.problems]


STEP = "steps:\n  - name: a\n    actions:\n      - "


@pytest.mark.parametrize(
    "text,expected",
    [
        ("[1, 2]", "a plan is a mapping"),
        ("steps: []", "field 'steps': must be a non-empty list"),
        ("stps: []\nsteps: [{name: a, actions: [{matrix: {models: [tiny], experiments: [baseline]}}]}]",
         "field 'stps': unknown"),
        ("repeats: 0\n" + STEP + "matrix: {models: [tiny], experiments: [baseline]}", "field 'repeats': must be"),
        ("store: 's3:bucket'\n" + STEP + "checkpoint: {model: tiny}", "field 'store': store URI 's3:bucket'"),
        ("steps:\n  - name: a\n    actions: []", "step 'a': field 'actions': must be a non-empty list"),
        ("steps:\n  - name: two words\n    actions: [{checkpoint: {model: tiny}}]", "step 1: field 'name'"),
        (STEP + "warm_up: {model: tiny}", "step 'a', action 1: unknown action 'warm_up'"),
        (STEP + "checkpoint: {model: tiny}\n        matrix: {models: [tiny]}", "action 1: must be one `kind"),
        (STEP + "checkpoint: tiny", "action 1 (checkpoint): its fields must be a mapping"),
        (STEP + "checkpoint: {}", "action 1 (checkpoint): field 'model': missing"),
        (STEP + "checkpoint: {model: tiny, link: 'yes'}", "field 'link': must be true or false"),
        (STEP + "matrix: {models: tiny, experiments: [baseline]}", "field 'models': must be a list"),
        (STEP + "matrix: {models: [tiny], experiments: [baseline], repeats: 0}", "field 'repeats': 0 is less than 1"),
        (STEP + "matrix: {models: [no-such], experiments: [baseline]}", "field 'models': unknown model 'no-such'"),
        (STEP + "matrix: {models: [tiny], experiments: [nope]}", "field 'experiments': unknown experiment 'nope'"),
        # The matrix would drop this pair silently (sharded state needs TP > 1): the plan refuses it.
        (STEP + "matrix: {models: [tiny], experiments: [runai_streamer_sharded]}", "tiny runai_streamer_sharded"),
        (STEP + "matrix: {models: [tiny], experiments: [baseline], scenarios: [nope]}", "unknown scenario 'nope'"),
        (STEP + "publish_compile_cache: {model: tiny, experiment: nope}", "field 'experiment': unknown experiment"),
        (STEP + "s3_server: {port: 70000}", "field 'port': 70000 is not a TCP port"),
        (STEP + "checkpoint: {model: tiny}\n  - name: a\n    actions: [{checkpoint: {model: tiny}}]",
         "step 'a': a second step of that name"),
        ("steps: [\n", "not YAML"),
    ],
)  # fmt: skip
def test_a_bad_plan_names_file_step_and_field(tmp_path: Path, text: str, expected: str):
    problems = _problems(tmp_path, text)
    assert any(expected in p for p in problems), problems


def test_every_problem_of_a_plan_is_named_at_once(tmp_path: Path):
    problems = _problems(
        tmp_path,
        "steps:\n  - name: a\n    actions:\n      - matrix: {models: [nope], experiments: [baseline]}\n"
        "  - name: b\n    actions:\n      - matrix: {models: [tiny], experiments: [baseline], node_state: hot}\n",
    )
    assert [p.split(":")[0] for p in problems] == ["step 'a', action 1 (matrix)", "step 'b', action 1 (matrix)"]


def test_a_missing_plan_file_is_a_plan_error(tmp_path: Path):
    with pytest.raises(PlanError, match="cannot read"):
        load_plan(tmp_path / "none.yaml")
