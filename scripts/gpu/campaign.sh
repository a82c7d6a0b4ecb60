#!/usr/bin/env bash
# GPU campaign steps for the lent machine (each fits one 10-minute call; the machine keeps /tmp between
# back-to-back calls). The plan is Python data (coldstart/lab/campaign.py, STEPS); this script is the machine's
# glue: its environment, then `python -m coldstart campaign`. Every run goes through the matrix runner: clear ->
# service.py -> client -> stop -> parse -> append a result row. Logs land in experiment_terminal_output/ as in
# the repo, rows in this lease's results file; both come back as one archive in $OUT (rows packed as
# results/results.jsonl), re-packed after every step. Stale Ray is stopped before each step. The exit status is
# non-zero when a command of any step failed.
#   COLDSTART_GIT_COMMIT=<sha> [REPEATS=n] [CALL_BUDGET_S=560] [CAMPAIGN_TAG=s7] bash scripts/gpu/campaign.sh STEP [STEP ...]
#   (any `python -m coldstart campaign` option goes after the steps; --dry-run prints every command, runs none)
# steps: tiny-lease tiny-cache tiny-s3 tiny-cc tiny-cc-mismatch tiny-mega-miss tiny-mega-hit llama8b-lease llama8b-baseline llama8b-rest
#        llama8b-hit llama8b-runai
#        tp2-shard tp2-sharded tp2-rest fast-tp2 scenarios-8b-x2 scenarios-8b-x2-default (these need two GPUs)
#        70b-prep 70b-baseline 70b-rest 70b-fast 70b-shard 70b-sharded (four GPUs; 70b-shard evicts the unsharded copy)
#        fast-tiny fast-8b-prep fast-8b fast-8b-cold fast-8b-mega baseline-8b ladder-8b ladder-8b-rest ladder-8b-inrep
#        (the fast path; warm node unless named)
#        moe-tiny (the 235B's family at tiny's size, every experiment) moe-tiny-fp8 (its FP8 layout: baseline, fast)
#        235b-prep 235b-fast 235b-stock (eight GPUs, COLDSTART_HOME=/dev/shm/coldstart-home)
#        scenarios-8b-fast scenarios-8b-cc scenarios-tiny (burst / after ready / back from zero, sleep and wake)
# Home: `python -m coldstart import-runs <the call's runs-*.tgz>` appends the new rows and copies their logs;
# runs a call's limit cut short have no row and are listed, not imported. Keep the call's $OUT/cc-*.tgz (one
# per compile-cache entry) in .gpu/cc-store/ and carry that folder to the next lease's first campaign call
# (stage p04 in a call of its own when the tree, p04 and the caches pass 64 MiB).
set -uo pipefail
source /tmp/gpu-site/env.sh
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
export COLDSTART_HOME="${COLDSTART_HOME:-/tmp/coldstart-home}" HF_HUB_OFFLINE=1 RAY_DEDUP_LOGS=0
# CALL_BUDGET_S: seconds this call may use, one deadline for all its steps (each matrix starts no run that its
# earlier rows say would not finish in what is left: a run killed halfway costs its minutes and leaves no row).
exec python -m coldstart campaign --repeats "${REPEATS:-1}" --call-budget-s "${CALL_BUDGET_S:-560}" \
  ${CAMPAIGN_TAG:+--tag "$CAMPAIGN_TAG"} --out "${OUT:-/tmp/out}" "$@"
