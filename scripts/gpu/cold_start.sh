#!/usr/bin/env bash
# One cold start on the lent GPU machine, the way a user runs it by hand:
#   clear_cache.py -> service.py MODEL EXPERIMENT (zero replicas) -> client.py -> SIGTERM -> orphan check.
# Usage (from the repo root, after the bundle is staged): bash scripts/gpu/cold_start.sh MODEL EXPERIMENT [service args]
# Writes into $OUT: <model>-<experiment>.log (the service's full log), <model>-<experiment>.json (client result).
set -uo pipefail
model=$1; experiment=$2; shift 2
source /tmp/gpu-site/env.sh
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
export COLDSTART_HOME="${COLDSTART_HOME:-/tmp/coldstart-home}" HF_HUB_OFFLINE=1
out="${OUT:-/tmp/out}"; mkdir -p "$out"
tag="$model-$experiment"
ready=/tmp/ready-$tag.json; rm -f "$ready"
echo "== $(date -u +%FT%TZ) cold start $tag on $(nvidia-smi --query-gpu=name --format=csv,noheader | head -1)"
ckpt="$COLDSTART_HOME/checkpoints/$model"
python -m coldstart checkpoint "$model" --out "$ckpt" || exit 1
python clear_cache.py --all --evict "$ckpt" --drop-caches || { echo "clear_cache failed"; exit 1; }
python service.py "$model" "$experiment" --ready-file "$ready" ${WEIGHTS_ARG:---weights $ckpt} "$@" > /tmp/service-$tag.out 2>&1 &
svc=$!
for _ in $(seq 1 300); do [ -f "$ready" ] && break; kill -0 $svc 2>/dev/null || break; sleep 1; done
if [ ! -f "$ready" ]; then echo "service not ready"; tail -50 /tmp/service-$tag.out; kill -TERM $svc; wait $svc; exit 1; fi
log=$(python -c "import json,sys; print(json.load(open(sys.argv[1]))['log'])" "$ready")
python client.py --model "$model" --timeout 1500 --out "$out/$tag.json"; rc=$?
kill -TERM $svc; wait $svc; echo "service exit: $?"
sleep 3
left=$(nvidia-smi --query-compute-apps=pid,process_name --format=csv,noheader)
echo "GPU processes left after shutdown: ${left:-none}"
cp "$log" "$out/$tag.log"
exit $rc
