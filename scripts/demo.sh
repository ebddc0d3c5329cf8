#!/usr/bin/env bash
# The main job on the embedded default: a fresh data directory, hdxd, a fleet of simulated
# bedside monitors streaming vital signs over mutual TLS, and a live view of what is
# committed. Ctrl-C stops everything. Environment:
#   HDX_DEMO_DIR       data directory (default ./demo-data, recreated each run)
#   HDX_DEMO_MONITORS  number of monitors (default 8)
#   HDX_DEMO_RATE      messages per second across the fleet (default 8)
#   HDX_DEMO_SECONDS   stop by itself after this many seconds (default: run until Ctrl-C)
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)
bash scripts/install-deps.sh
bash scripts/build.sh build
bin=$root/build
data=${HDX_DEMO_DIR:-$root/demo-data}
monitors=${HDX_DEMO_MONITORS:-8}
rate=${HDX_DEMO_RATE:-8}
seconds=${HDX_DEMO_SECONDS:-0}

rm -rf "$data"
"$bin/hdx" init "$data" >/dev/null
"$bin/hdx" device add viewer --role subscriber -d "$data" >/dev/null

pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  echo
  echo "stored: $("$bin/hdx" query -d "$data" --count) messages; integrity: $("$bin/hdx" verify -d "$data" | tail -1)"
  echo "data directory: $data (hdxd log: $data/hdxd.log)"
}
trap cleanup EXIT
trap 'exit 0' INT TERM

"$bin/hdxd" -c "$data/hdx.conf" 2>"$data/hdxd.log" &
pids+=($!)
for _ in $(seq 1 100); do
  grep -q 'event=listening' "$data/hdxd.log" 2>/dev/null && break
  sleep 0.05
done
grep -q 'event=listening' "$data/hdxd.log" || { cat "$data/hdxd.log"; exit 1; }

echo "hdxd is running: MLLP over mutual TLS on 127.0.0.1:2575, subscribers on 127.0.0.1:2577"
echo "$monitors simulated monitors send $rate ORU^R01 vital-sign messages per second;"
echo "each line below is a message acknowledged only after it was encrypted and committed."
echo

"$bin/hdx" sim -d "$data" --monitors "$monitors" --rate "$rate" --seconds "$seconds" \
  >"$data/sim.log" 2>&1 &
pids+=($!)
tail_args=(tail -d "$data" --cert "$data/devices/viewer.pem" --key "$data/devices/viewer.key" --vitals)
if [ "$seconds" -gt 0 ]; then
  timeout "$seconds" "$bin/hdx" "${tail_args[@]}" || true
else
  "$bin/hdx" "${tail_args[@]}"
fi
