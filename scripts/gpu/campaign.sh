#!/usr/bin/env bash
# GPU campaign steps for the lent machine (each fits one 10-minute call; the machine keeps /tmp between
# back-to-back calls). Every run goes through the matrix runner: clear -> service.py -> client -> stop ->
# parse -> append a result row. Logs land in experiment_terminal_output/ as in the repo, rows in this lease's
# results file; both come back as one archive in $OUT (rows packed as results/results.jsonl).
#   COLDSTART_GIT_COMMIT=<sha> [REPEATS=n] [CALL_BUDGET_S=560] bash scripts/gpu/campaign.sh STEP [STEP ...]
# steps: tiny-lease tiny-cache tiny-s3 tiny-cc tiny-cc-mismatch tiny-mega-miss tiny-mega-hit llama8b-lease llama8b-baseline llama8b-rest
#        llama8b-hit llama8b-runai
#        tp2-shard tp2-sharded tp2-rest (the tp2 steps need two GPUs)
#        fast-tiny fast-8b-prep fast-8b fast-8b-cold fast-8b-mega baseline-8b ladder-8b ladder-8b-rest
#        (the fast path; warm node unless named)
# Home: `python -m coldstart import-runs <the call's runs-*.tgz>` appends the new rows and copies their logs;
# runs a call's limit cut short have no row and are listed, not imported. Keep $OUT/compile-cache.tgz as
# .gpu/cc-store/compile-cache.tgz and carry that folder to the next lease's first campaign call.
set -uo pipefail
source /tmp/gpu-site/env.sh
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
export COLDSTART_HOME="${COLDSTART_HOME:-/tmp/coldstart-home}" HF_HUB_OFFLINE=1 RAY_DEDUP_LOGS=0
out="${OUT:-/tmp/out}"; mkdir -p "$out" results
gpu=$(nvidia-smi --query-gpu=name --format=csv,noheader | head -1 | tr ' ' '-')${CAMPAIGN_TAG:+-$CAMPAIGN_TAG}
# Each call brings a fresh copy of the tree, results file included: the matrix appends to a file of this lease
# (seeded from the tree's once), so it resumes where the last call stopped, even one cut short.
results=/tmp/coldstart-lease-results.jsonl
[ -f "$results" ] || cp results/results.jsonl "$results"
# The logs of this lease's earlier calls too: each call's archive then holds every row's log (session 5's
# later archives lacked the earlier calls' logs, which came fresh with the tree).
lease_logs=/tmp/coldstart-lease-logs
[ -d "$lease_logs" ] && cp -rn "$lease_logs"/. experiment_terminal_output/
# The lent machine's call limit: the matrix starts no run that its earlier rows say would not finish in time
# (a run killed halfway costs its minutes and leaves no row). CALL_BUDGET_S: seconds this call may use.
deadline=$(( $(date +%s) + ${CALL_BUDGET_S:-560} ))
matrix() { python -m coldstart matrix --results "$results" --repeats "${REPEATS:-1}" \
  --time-budget-s $(( deadline - $(date +%s) )) "$@"; }
ckpt() { python -m coldstart checkpoint "$1" --no-progress >/dev/null && python -m coldstart stage put "$1" \
  --from "$COLDSTART_HOME/checkpoints/$1"; }
moto_up() {
  export AWS_ACCESS_KEY_ID=testing AWS_SECRET_ACCESS_KEY=testing AWS_DEFAULT_REGION=us-east-1 \
         AWS_EC2_METADATA_DISABLED=true AWS_ENDPOINT_URL=http://127.0.0.1:5555
  python -m moto.server -H 127.0.0.1 -p 5555 >/tmp/moto.log 2>&1 & MOTO=$!
  for _ in $(seq 1 50); do python -c "import boto3; boto3.client('s3').list_buckets()" 2>/dev/null && break; sleep 0.3; done
  python -c "import boto3; boto3.client('s3').create_bucket(Bucket='lab')"
}
# Compile caches published on an earlier lease of this GPU kind (their key holds the GPU name and versions, so
# they restore here): carried as .gpu/cc-store/compile-cache.tgz, unpacked into this lease's store once.
store_dir="$COLDSTART_HOME/store"
if [ -f .gpu/cc-store/compile-cache.tgz ] && [ ! -d "$store_dir/compile-cache" ]; then
  mkdir -p "$store_dir" && tar xzf .gpu/cc-store/compile-cache.tgz -C "$store_dir"
  python -m coldstart compile-cache show
fi
# Publish what the last run left, when one left anything: on a fresh lease whose store came carried, the node
# has no engine caches yet and the store already has the entry. (service.py refuses caches of another config.)
publish() {
  if [ -d "$COLDSTART_HOME/engine-cache/vllm/torch_compile_cache" ]; then
    python service.py "$1" "$2" --publish-compile-cache
  else
    echo "publish $1 $2: no engine caches on this node yet (a fresh lease); the store holds:"
    python -m coldstart compile-cache show --model "$1"
  fi
}
# Archive after every step: a call cut short by its time limit still brings home the steps it finished.
archive() {
  cp "$results" results/results.jsonl
  mkdir -p "$lease_logs" && cp -r experiment_terminal_output/. "$lease_logs"/
  tar czf "$out/runs.tgz" results experiment_terminal_output
  # The store's compile caches go home too, for the next lease to carry (a few MB; not committed).
  if [ -d "$store_dir/compile-cache" ]; then tar czf "$out/compile-cache.tgz" -C "$store_dir" compile-cache; fi
}
warm() { matrix --node-state warm "$@"; }
for step in "$@"; do
  echo "== $(date -u +%FT%TZ) step $step on $gpu"
  # A step cut short by the call's time limit leaves Ray's daemons and its Serve app (port 8000) behind;
  # service.py would refuse to start beside them. This machine runs nothing else of Ray.
  ray stop --force >/dev/null 2>&1 || true
  # `ray stop` misses the actors of a session whose raylet the call's kill took down first (the old proxy kept
  # port 8000 and every later service.py exited at once).
  pkill -9 -f '^ray::' 2>/dev/null || true
  case $step in
    tiny-s3)
      moto_up
      python -m coldstart checkpoint tiny --no-progress >/dev/null
      python -m coldstart stage put tiny --from "$COLDSTART_HOME/checkpoints/tiny" --store s3://lab/coldstart
      matrix --campaign "$gpu-s3" --models tiny --experiments runai_streamer -- --store s3://lab/coldstart
      kill $MOTO ;;
    tiny-cc)
      ckpt tiny
      matrix --campaign "$gpu-cc-miss" --models tiny --experiments compile_cache
      python service.py tiny compile_cache --publish-compile-cache
      matrix --campaign "$gpu-cc-hit" --models tiny --experiments compile_cache ;;
    tiny-cc-mismatch)
      # A cache captured under another config (max_model_len differs) must fall back with MISMATCH.
      matrix --campaign "$gpu-cc-mismatch" --models tiny --experiments compile_cache -- --max-model-len 256 ;;
    llama8b-baseline)
      ckpt llama-3-8b
      matrix --campaign "$gpu" --models llama-3-8b --experiments baseline
      python service.py llama-3-8b compile_cache --publish-compile-cache ;;
    llama8b-rest)
      matrix --campaign "$gpu" --models llama-3-8b --experiments runai_streamer compile_cache all ;;
    llama8b-lease)
      # One round (REPEATS=n: round n-1) of the 8B matrix on this lease, resumable across its calls: baseline
      # first (it compiles; its cache is published for the cache experiments), then the others.
      ckpt llama-3-8b
      matrix --campaign "$gpu" --models llama-3-8b --experiments baseline
      publish llama-3-8b compile_cache
      matrix --campaign "$gpu" --models llama-3-8b --experiments runai_streamer compile_cache all ;;
    llama8b-hit)
      matrix --campaign "$gpu" --models llama-3-8b --experiments compile_cache all ;;
    llama8b-runai)
      matrix --campaign "$gpu" --models llama-3-8b --experiments runai_streamer baseline ;;
    tiny-mega-miss)
      # vLLM's whole-model mega AOT artifact: its cache has its own key, so a miss run captures it first.
      ckpt tiny
      matrix --campaign "$gpu-mega-miss" --models tiny --experiments compile_cache_mega
      python service.py tiny compile_cache_mega --publish-compile-cache ;;
    tiny-lease)
      # The small model's round, as llama8b-lease (baseline compiles and publishes for the cache experiments).
      ckpt tiny
      matrix --campaign "$gpu" --models tiny --experiments baseline
      publish tiny compile_cache
      matrix --campaign "$gpu" --models tiny --experiments runai_streamer compile_cache all ;;
    tiny-cache)
      # The small model's cache experiments alone, against a cache carried from an earlier lease (no baseline).
      ckpt tiny
      matrix --campaign "$gpu" --models tiny --experiments all compile_cache ;;
    tiny-mega-hit)
      matrix --campaign "$gpu-mega-hit" --models tiny --experiments compile_cache_mega ;;
    tp2-shard)
      ckpt llama-3-8b-tp2
      python -m coldstart shard llama-3-8b-tp2 --from "$COLDSTART_HOME/checkpoints/llama-3-8b-tp2" --no-progress ;;
    tp2-sharded)
      matrix --campaign "$gpu-x2" --models llama-3-8b-tp2 --experiments runai_streamer_sharded ;;
    tp2-rest)
      ckpt llama-3-8b-tp2  # ~10 s when tp2-shard already wrote and staged it on this lease (it skips)
      matrix --campaign "$gpu-x2" --models llama-3-8b-tp2 --experiments baseline runai_streamer ;;
    fast-tiny)
      # The fast path's cache key holds its capture sizes and KV size: a miss run of its config captures it.
      ckpt tiny
      warm --campaign "$gpu-warm-miss" --models tiny --experiments cc_trims --repeats 1
      publish tiny cc_trims
      warm --campaign "$gpu-warm" --models tiny --experiments fast ;;
    fast-8b-prep)
      # One miss run whatever REPEATS says (a later --repeats wins): it exists to capture the cache.
      ckpt llama-3-8b
      warm --campaign "$gpu-warm-miss" --models llama-3-8b --experiments cc_trims --repeats 1
      publish llama-3-8b cc_trims ;;
    fast-8b-mega)
      # fast + the whole-model AOT artifact: its own cache key, so one miss run captures it, then the hits.
      ckpt llama-3-8b
      warm --campaign "$gpu-warm-miss" --models llama-3-8b --experiments fast_mega --repeats 1
      publish llama-3-8b fast_mega
      warm --campaign "$gpu-warm" --models llama-3-8b --experiments fast_mega ;;
    fast-8b)
      warm --campaign "$gpu-warm" --models llama-3-8b --experiments fast ;;
    baseline-8b)
      # One stock run on this lease: the bottom rung, and the greedy answer the fast rungs are checked against.
      ckpt llama-3-8b
      warm --campaign "$gpu-warm" --models llama-3-8b --experiments baseline --repeats 1 ;;
    fast-8b-cold)
      matrix --campaign "$gpu-cold" --models llama-3-8b --experiments fast --repeats 1 ;;
    ladder-8b)
      # The rungs below fast, on a warm node: baseline compiles and publishes the stock config's cache.
      ckpt llama-3-8b
      warm --campaign "$gpu-warm" --models llama-3-8b --experiments baseline
      publish llama-3-8b compile_cache
      warm --campaign "$gpu-warm" --models llama-3-8b --experiments compile_cache cc_skip_init ;;
    ladder-8b-rest)
      warm --campaign "$gpu-warm" --models llama-3-8b --experiments cc_in_replica cc_prestart cc_trims ;;
    *) echo "unknown step $step"; exit 2 ;;
  esac
  archive
done
df -h /tmp | tail -1
