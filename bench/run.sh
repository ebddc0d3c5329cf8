#!/usr/bin/env bash
# The reproducible performance run behind docs/PERFORMANCE.md. Builds the release binaries,
# then on fresh data directories:
#   1. closed-loop ingest, 64 mutual-TLS connections (hdx bench)
#   2. a steady 10,000 msgs/s over 64 connections, with a live subscriber measuring delivery
#      latency after commit (hdx tail --latency)
#   3. resident memory of 1,000 idle TLS connections
#   4. hdx verify (full and --fast) of the store step 1 filled, beside one core's AES-256-GCM
#      and SHA-256 rates (openssl speed), the bound of the full check
#   5. with BENCH_PROOFS=1: inclusion proofs from a 10,000,000-record store (bench/proof_bench.c;
#      ~30 s to build, 1.8 GiB in the scratch directory)
# Each figure is printed with the machine limits measured in the same run.
# Environment: BENCH_SECONDS (default 10), BENCH_CONNECTIONS (64), BENCH_RATE (10000),
# BENCH_PROOFS (0).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install-deps.sh
bash scripts/build.sh build -DHDX_BENCH=ON
bin=$PWD/build
secs=${BENCH_SECONDS:-10}
conns=${BENCH_CONNECTIONS:-64}
rate=${BENCH_RATE:-10000}
work=$(mktemp -d)
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null; rm -rf "$work"; }
trap cleanup EXIT
free_port() { /usr/bin/python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
start_hdxd() { # DIR -> sets port, sport, hpid
  port=$(free_port); sport=$(free_port)
  "$bin/hdxd" -c "$1/hdx.conf" -o mllp.listen=127.0.0.1:$port -o sub.listen=127.0.0.1:$sport 2>"$1/hdxd.log" &
  hpid=$!; pids+=("$hpid")
  for _ in $(seq 100); do grep -q event=listening "$1/hdxd.log" && return 0; sleep 0.05; done
  cat "$1/hdxd.log"; exit 1
}

echo "machine: $(nproc) cores, $(awk '/MemTotal/ {printf "%.0f GiB", $2/1048576}' /proc/meminfo), $(uname -r)"
echo
echo "== 1. closed loop, $conns connections, $secs s"
"$bin/hdx" init "$work/a" >/dev/null
"$bin/hdx" bench -d "$work/a" --connections "$conns" --seconds "$secs"
grep -o 'event=commit_stats.*' "$work/a/bench-hdxd.log" || true

echo
echo "== 2. steady $rate msgs/s, $conns connections, $secs s, one live subscriber"
"$bin/hdx" init "$work/b" >/dev/null
"$bin/hdx" device add watcher --role subscriber -d "$work/b" >/dev/null
start_hdxd "$work/b"
total=$(( rate * (secs + 1) ))
"$bin/hdx" tail -d "$work/b" --cert "$work/b/devices/watcher.pem" --key "$work/b/devices/watcher.key" \
  --to 127.0.0.1:$sport --latency --count "$total" 2>"$work/tail.err" &
tpid=$!; pids+=("$tpid")
sleep 0.5
"$bin/hdx" bench -d "$work/b" --to 127.0.0.1:$port --connections "$conns" --seconds "$secs" --rate "$rate"
wait "$tpid" || true
grep '^delivery' "$work/tail.err" | sed 's/^/subscriber /'
echo "server_rss_mib=$(awk '/VmHWM/ {printf "%.1f", $2/1024}' /proc/$hpid/status)"
kill "$hpid"

echo
echo "== 3. 1,000 idle TLS connections"
"$bin/hdx" init "$work/c" >/dev/null
"$bin/hdx" device add idle -d "$work/c" >/dev/null
start_hdxd "$work/c"
/usr/bin/python3 bench/idle_connections.py "$work/c" "$port" "$hpid" 1000 \
  "$work/c/devices/idle.pem" "$work/c/devices/idle.key"

echo
echo "== 4. hdx verify of the store from step 1 ($(nproc) threads)"
openssl speed -seconds 3 -bytes 1024 -evp aes-256-gcm 2>/dev/null | tail -1 | sed 's/^/machine (one core, 1 KiB): /'
openssl speed -seconds 3 -bytes 1024 -evp sha256 2>/dev/null | tail -1 | sed 's/^/machine (one core, 1 KiB): /'
for mode in "" --fast; do
  t0=$(date +%s%N)
  "$bin/hdx" verify -d "$work/a" $mode | tail -1
  echo "verify $mode: $(( ($(date +%s%N) - t0) / 1000000 )) ms wall"
done

if [ "${BENCH_PROOFS:-0}" = 1 ]; then
  echo
  echo "== 5. inclusion proofs at 10,000,000 records"
  "$bin/proof_bench" "$work/p" 10000000 10000
fi
