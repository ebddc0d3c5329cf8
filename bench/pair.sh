#!/usr/bin/env bash
# pair.sh BIN_DIR [PERF_OUT]: one ingest figure beside its same-run ceiling, for quick A/B
# runs between builds (call it alternately with each build's directory). Runs the ACK-only
# server (BIN_DIR/ackserver, bench/ackserver.c) driven by BIN_DIR/hdx bench, then a fresh
# hdxd on a fresh data directory with the same load, and prints one line:
#   ceiling=MSGS_PER_S hdx=MSGS_PER_S p99=MS ratio=HDX/CEILING
# PERF_OUT: also `perf record -g` of hdxd for SECS-2 seconds into that file.
# Knobs: SECS (6), INFL (1, messages in flight per connection), CONNS (64).
# Loopback only; both servers stop on their own (ackserver -t, hdxd killed at the end).
# BIN_DIR must be a release build with -DHDX_BENCH=ON (bash scripts/build.sh build -DHDX_BENCH=ON).
set -u
bin=$1
perfout=${2:-}
S=${SECS:-6}
I=${INFL:-1}
C=${CONNS:-64}
w=$(mktemp -d)
trap 'rm -rf "$w"' EXIT
. "$(dirname "$0")/quick_lib.sh"
rate() { grep -o "$2=[0-9.]*" "$1" | tail -1 | cut -d= -f2; }
start_ackserver "$w/c" $((S + 60))
timeout $((S + 60)) "$bin/hdx" bench -d "$w/c" --to "127.0.0.1:$ap" --connections "$C" --seconds "$S" \
  --inflight "$I" >"$w/c/b.out" 2>&1
kill "$apid" 2>/dev/null; wait "$apid" 2>/dev/null
start_hdxd "$w/h"
ppid=
if [ -n "$perfout" ]; then
  (sleep 1; perf record -g -o "$perfout" -p "$hpid" -- sleep $((S - 2)) >/dev/null 2>&1) &
  ppid=$!
fi
timeout $((S + 60)) "$bin/hdx" bench -d "$w/h" --to "127.0.0.1:$hp" --connections "$C" --seconds "$S" \
  --inflight "$I" >"$w/h/b.out" 2>&1
[ -n "$ppid" ] && wait "$ppid" 2>/dev/null
kill "$hpid" 2>/dev/null; wait "$hpid" 2>/dev/null
ceil=$(rate "$w/c/b.out" msgs_per_s); hdx=$(rate "$w/h/b.out" msgs_per_s); p99=$(rate "$w/h/b.out" p99_ms)
echo "ceiling=${ceil:-na} hdx=${hdx:-na} p99=${p99:-na} ratio=$(awk -v a="${hdx:-0}" -v b="${ceil:-0}" 'BEGIN { if (b > 0) printf "%.3f", a / b; else print "na" }')"
