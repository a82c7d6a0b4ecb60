#!/usr/bin/env bash
# A campaign plan on the team's GPU machine. That machine differs from a batch job in three ways, all handled
# here (the package knows none of them):
#  - a command ends after 10 minutes: each gets BUDGET_S (560 s) of it, and the next command resumes the
#    campaign from its folder under /tmp (the machine keeps /tmp between back-to-back commands);
#  - it has no shared store: the compile caches brought along as .gpu/cc-store/*.tgz join its local store
#    first, and each entry published on it comes back as cc-<model>-<key>.tgz (an archive per entry: a file
#    handed back stays under 16 MiB, and three 8B entries are 22 MB);
#  - files come back from one folder (BACK, the first argument): the campaign's runs.tgz as runs-<plan>.tgz
#    and those cc-*.tgz are copied there.
#   bash scripts/gpu/campaign.sh BACK PLAN [STEP ...] [python -m coldstart campaign options]
# Then at home: `python -m coldstart import-runs runs-<plan>.tgz`, and keep the cc-*.tgz in .gpu/cc-store/.
set -uo pipefail
back="$1"
shift
source /tmp/gpu-site/env.sh
# The copied tree's .git is the one the machine first got, not the tree's own commit: rows would name a stale one.
if [ -z "${COLDSTART_GIT_COMMIT:-}" ]; then
  echo "error: set COLDSTART_GIT_COMMIT to the commit of the tree this command carries (git rev-parse HEAD)" >&2
  exit 2
fi
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
export COLDSTART_HOME="${COLDSTART_HOME:-/tmp/coldstart-home}" HF_HUB_OFFLINE=1 RAY_DEDUP_LOGS=0
store="$COLDSTART_HOME/store"
# Older than every entry published on this machine (tar keeps a brought entry's own times).
brought="$COLDSTART_HOME/.caches-brought"
mkdir -p "$store" "$back"
for archive in .gpu/cc-store/*.tgz; do
  [ -e "$archive" ] || continue
  # --skip-old-files: an entry this machine already has may be newer than the one brought along.
  tar xzf "$archive" --skip-old-files -C "$store" || echo "error: cannot unpack $archive into $store" >&2
done
# A second in the past: `find -newer` wants a strictly later time, and an entry published in the same clock tick
# as the marker would otherwise stay behind.
[ -e "$brought" ] || touch -d '1 second ago' "$brought"
python -m coldstart campaign "$@" --budget-s "${BUDGET_S:-560}" --stop-stale-ray
status=$?
for runs in "$COLDSTART_HOME"/campaigns/*/runs.tgz; do
  [ -e "$runs" ] && cp "$runs" "$back/runs-$(basename "$(dirname "$runs")").tgz"
done
while read -r manifest; do
  entry="$(dirname "$manifest")"
  rel="${entry#"$store"/}"
  # The manifest and the archive it names; an archive it no longer names stays behind.
  named="$(python -c 'import json, sys; print(json.load(open(sys.argv[1]))["archive_name"])' "$manifest")"
  tar czf "$back/cc-$(basename "$(dirname "$entry")")-$(basename "$entry").tgz" -C "$store" \
    "$rel/manifest.json" "$rel/$named" || status=1
done < <(find "$store/compile-cache" -mindepth 3 -maxdepth 3 -name manifest.json -newer "$brought" 2>/dev/null)
exit "$status"
