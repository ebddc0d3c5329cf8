#!/usr/bin/env bash
# steady.sh BIN_DIR: issue 10's tail-latency case beside its same-run reference, for A/B runs
# between builds. Four loads, 64 connections each:
#   1. the ACK-only server (BIN_DIR/ackserver), closed loop for CL seconds: the ceiling, then
#      at a steady RATE msgs/s for ST seconds: the machine's own tail
#   2. a fresh hdxd, closed loop (1 in flight per connection) for CL seconds
#   3. right after, on the same hdxd and data directory, a steady RATE msgs/s for ST seconds
# and prints one line per load ("ceiling_closed ...", "ceiling_steady ...", "closed ...
# ratio_to_ceiling=R", "steady ...") with msgs/s
# and the ACK latency percentiles, then hdxd's commit batch sizes (batch_hist=SIZE:COUNT,...).
# Knobs: RATE (10000), CL (10), ST (15), CONNS (64), PATIENTS (unset: one per connection; N:
# hdx bench --patients N), CLIENT (the hdx that sends, default BIN_DIR/hdx: so that an older
# build's hdxd is loaded by the same client). Loopback only; every load is bounded.
# BIN_DIR: a release build with -DHDX_BENCH=ON. bench/run.sh steps b and c measure the same.
set -u
bin=$1
R=${RATE:-10000}
CL=${CL:-10}
ST=${ST:-15}
C=${CONNS:-64}
cl=${CLIENT:-$bin/hdx}
pat=${PATIENTS:+--patients $PATIENTS}
w=$(mktemp -d)
trap 'rm -rf "$w"' EXIT
. "$(dirname "$0")/quick_lib.sh"
figures() { grep -o "msgs_per_s=[0-9.]* p50_ms=[0-9.]* p99_ms=[0-9.]* p999_ms=[0-9.]*" "$1" | tail -1; }
start_ackserver "$w/c" $((ST + CL + 60))
timeout $((CL + 60)) "$cl" bench -d "$w/c" --to "127.0.0.1:$ap" --connections "$C" \
  --seconds "$CL" --inflight 1 $pat >"$w/c/closed.out" 2>&1
echo "ceiling_closed $(figures "$w/c/closed.out")"
timeout $((ST + 60)) "$cl" bench -d "$w/c" --to "127.0.0.1:$ap" --connections "$C" \
  --seconds "$ST" --rate "$R" $pat >"$w/c/b.out" 2>&1
kill "$apid" 2>/dev/null; wait "$apid" 2>/dev/null
echo "ceiling_steady $(figures "$w/c/b.out")"
start_hdxd "$w/h"
timeout $((CL + 60)) "$cl" bench -d "$w/h" --to "127.0.0.1:$hp" --connections "$C" \
  --seconds "$CL" --inflight 1 $pat >"$w/h/closed.out" 2>&1
echo "closed $(figures "$w/h/closed.out") ratio_to_ceiling=$(awk -v a="$(figures "$w/h/closed.out" | cut -d' ' -f1 | cut -d= -f2)" -v b="$(figures "$w/c/closed.out" | cut -d' ' -f1 | cut -d= -f2)" 'BEGIN { if (b > 0) printf "%.3f", a / b; else print "na" }')"
timeout $((ST + 60)) "$cl" bench -d "$w/h" --to "127.0.0.1:$hp" --connections "$C" \
  --seconds "$ST" --rate "$R" $pat >"$w/h/steady.out" 2>&1
echo "steady $(figures "$w/h/steady.out")"
kill "$hpid" 2>/dev/null; wait "$hpid" 2>/dev/null
grep -o "batch_hist=[^ ]*" "$w/h/d.log" | tail -1
