#!/usr/bin/env bash
# route_bench.sh: issue 12's route figures, each beside its same-run reference
# (docs/PERFORMANCE.md, "Routes"). Release build; loopback; every load bounded in time.
#   r0. hdxd without routes: a steady RATE msgs/s (ACK p99) and a closed loop of CONNECTIONS x 1
#   r1. the same hdxd data directory with ROUTES MLLP/TLS routes (mutual TLS, one connection each)
#       to the ACK-only server bench/ackserver.c (it answers every frame AA, nothing stored):
#       the same two loads; ingest with routes / without; each route's delivery latency from
#       the record's commit to its ACK (p50, p99, from the lanes' status files)
#   rc. the references: the ACK-only server driven by hdx bench with the routes' shapes (1 and
#       ROUTES connections, INFLIGHT in flight; ROUTES connections at RATE x ROUTES msgs/s)
#   r2. backlog drain: the ACK-only server stopped, DRAIN messages ingested (closed loop,
#       CONNECTIONS x 8), then the server started again: each route's drain rate with
#       max_inflight = INFLIGHT; then the same with one route alone
# Environment: BENCH_ROUTES (8), BENCH_RATE (10000), BENCH_SECONDS (15), BENCH_CONNECTIONS (64),
# BENCH_DRAIN (200000; 0 skips r2), BENCH_ROUTE_INFLIGHT (64), BENCH_PERF (a file: perf record
# of hdxd over r1's closed loop, for `perf report -i FILE`; BENCH_PERF_CG fp or dwarf, the call
# graph), BENCH_ROUTE_MATCH (a match for every route, e.g. type:ZZZ to measure the routes'
# cost without deliveries). About 3 minutes with the defaults.
set -euo pipefail
cd "$(dirname "$0")/.."
src=$PWD
bash scripts/install-deps.sh
bash scripts/build.sh build -DHDX_BENCH=ON >/dev/null
bin=$src/build
routes=${BENCH_ROUTES:-8}
rate=${BENCH_RATE:-10000}
secs=${BENCH_SECONDS:-15}
conns=${BENCH_CONNECTIONS:-64}
drain=${BENCH_DRAIN:-200000}
infl=${BENCH_ROUTE_INFLIGHT:-64}
work=$(mktemp -d)
pids=()
summary=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT
free_port() { /usr/bin/python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
kv() { { grep -o "\(^\| \)$2=[^ ]*" "$1" 2>/dev/null || true; } | tail -1 | sed "s/^ *$2=//;s/^$/na/" | grep . || echo na; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (a == "na" || b == "na" || b + 0 == 0) print "na"; else printf "%.3f\n", a / b }'; }
hdr() { echo; echo "$* [loadavg $(cut -d' ' -f1-3 /proc/loadavg)]"; }
add() { summary+=("$*"); }
wait_for() { # FILE PATTERN PID
  for _ in $(seq 200); do
    grep -q "$2" "$1" 2>/dev/null && return 0
    kill -0 "$3" 2>/dev/null || break
    sleep 0.05
  done
  cat "$1"
  exit 1
}
stop_pid() {
  kill "$1" 2>/dev/null || return 0
  for _ in $(seq 400); do kill -0 "$1" 2>/dev/null || break; sleep 0.05; done
  kill -9 "$1" 2>/dev/null || true
  wait "$1" 2>/dev/null || true
}
start_hdxd() {
  port=$(free_port)
  "$bin/hdxd" -c "$d/hdx.conf" -o mllp.listen=127.0.0.1:$port -o sub.listen= -o http.listen= -o dicom.listen= \
    2>>"$d/hdxd.log" &
  hpid=$!
  pids+=("$hpid")
  wait_for "$d/hdxd.log" "event=started .*pid=$hpid" "$hpid"
}
start_ack() {
  "$bin/ackserver" -c "$d/hdx.conf" -l 127.0.0.1:$aport -t 3600 2>"$work/ack.$1.log" &
  apid=$!
  pids+=("$apid")
  wait_for "$work/ack.$1.log" event=listening "$apid"
}
last_seq() { "$bin/hdx" query -d "$d" --kind any --count 2>/dev/null; } # seqs have no gaps
lane_val() { sed -n "s/^$2=//p" "$d/routes/$1/lane-0.status" 2>/dev/null || echo na; }
ticks_of() { awk '{print $14 + $15}' "/proc/$1/stat" 2>/dev/null || echo 0; }
lane_ticks_now() { # the CPU ticks of hdxd's lane threads (hdx-rNAME-K)
  local t n=0
  for t in /proc/$hpid/task/*; do
    case $(cat "$t/comm" 2>/dev/null) in hdx-r*) n=$((n + $(awk '{print $14 + $15}' "$t/stat" 2>/dev/null || echo 0))) ;; esac
  done
  echo "$n"
}
write_routes() { # N
  : >"$work/routes.conf"
  for ((i = 1; i <= $1; i++)); do
    printf '\n[route r%d]\nto = mllps://127.0.0.1:%d\nca = ca.pem\ncert = devices/route-out.pem\nkey = devices/route-out.key\nmax_inflight = %d\nbackoff_ms = 50\nbackoff_max_ms = 200\n' \
      "$i" "$aport" "$infl" >>"$work/routes.conf"
    [ -z "${BENCH_ROUTE_MATCH:-}" ] || printf 'match = %s\n' "$BENCH_ROUTE_MATCH" >>"$work/routes.conf"
  done
  cp "$work/base.conf" "$d/hdx.conf"
  cat "$work/routes.conf" >>"$d/hdx.conf"
}

echo "machine: $(nproc) cores, $(uname -r); commit $(git rev-parse --short HEAD 2>/dev/null || echo na)"
d=$work/d
"$bin/hdx" init "$d" >/dev/null
"$bin/hdx" device add route-out -d "$d" >/dev/null
"$bin/hdx" device add bench -d "$d" >/dev/null
cp "$d/hdx.conf" "$work/base.conf"
aport=$(free_port)
start_ack main

hdr "== rc. the references: the ACK-only server itself, driven by hdx bench as the routes drive it"
# one connection with $infl in flight (a draining route), $routes connections so (8 draining
# routes), and $routes connections at $rate x $routes msgs/s (the fan-out's delivery rate)
"$bin/hdx" bench -d "$d" --to 127.0.0.1:$aport --connections 1 --inflight "$infl" --seconds "$secs" | tee "$work/rc1.out"
"$bin/hdx" bench -d "$d" --to 127.0.0.1:$aport --connections "$routes" --inflight "$infl" --seconds "$secs" | tee "$work/rcN.out"
"$bin/hdx" bench -d "$d" --to 127.0.0.1:$aport --connections "$routes" --inflight "$infl" --seconds "$secs" --rate $((rate * routes)) | tee "$work/rcR.out"
add "ceiling_1conn_${infl}inflight_msgs_per_s=$(kv "$work/rc1.out" msgs_per_s) ceiling_${routes}conn_msgs_per_s=$(kv "$work/rcN.out" msgs_per_s) ceiling_${routes}conn_at_$((rate * routes))_p99_ms=$(kv "$work/rcR.out" p99_ms)"

hdr "== r0. hdxd without routes: steady $rate msgs/s, then closed loop ${conns}x1 ($secs s each)"
start_hdxd
"$bin/hdx" bench -d "$d" --to 127.0.0.1:$port --connections "$conns" --seconds "$secs" --rate "$rate" | tee "$work/r0rate.out"
"$bin/hdx" bench -d "$d" --to 127.0.0.1:$port --connections "$conns" --seconds "$secs" | tee "$work/r0loop.out"
stop_pid "$hpid"

hdr "== r1. the same with $routes MLLP/TLS routes (max_inflight $infl) to the ACK-only server"
write_routes "$routes"
start_hdxd
"$bin/hdx" bench -d "$d" --to 127.0.0.1:$port --connections "$conns" --seconds "$secs" --rate "$rate" | tee "$work/r1rate.out"
sleep 2
for ((i = 1; i <= routes; i++)); do
  echo "r$i: delivery latency p50 $(lane_val r$i latency_p50_ms) ms p99 $(lane_val r$i latency_p99_ms) ms p99.9 $(lane_val r$i latency_p999_ms) ms over $(lane_val r$i latency_n) messages; acked $(lane_val r$i acked)"
done | tee "$work/r1lat.out"
if [ -n "${BENCH_PERF:-}" ]; then
  perf record -q --call-graph "${BENCH_PERF_CG:-fp}" -F 499 -o "$BENCH_PERF" -p "$hpid" -- sleep $((secs + 1)) 2>/dev/null &
  perfpid=$!
fi
lt0=$(lane_ticks_now) at0=$(ticks_of "$apid") ht0=$(ticks_of "$hpid") w0=$(date +%s%N)
"$bin/hdx" bench -d "$d" --to 127.0.0.1:$port --connections "$conns" --seconds "$secs" | tee "$work/r1loop.out"
lt1=$(lane_ticks_now) at1=$(ticks_of "$apid") ht1=$(ticks_of "$hpid") w1=$(date +%s%N)
[ -z "${BENCH_PERF:-}" ] || wait "$perfpid" || true
cpu=$(awk '{print $14 + $15}' /proc/$hpid/stat)
# the lanes' own CPU (threads hdx-rNAME-K) per delivered message, over r1's two loads: the
# figure to compare builds by (the ratios above move with whatever else the 2 cores run)
lane_ticks=$(lane_ticks_now)
acked_all=0
for ((i = 1; i <= routes; i++)); do
  a1=$(lane_val r$i acked)
  [ "$a1" = na ] || acked_all=$((acked_all + a1))
done
stop_pid "$hpid"
cores() { awk -v t=$(($2 - $1)) -v ns=$((w1 - w0)) -v hz="$(getconf CLK_TCK)" 'BEGIN { printf "%.2f", t / hz / (ns / 1e9) }'; }
add "closed_loop_with_routes_cores: hdxd=$(cores "$ht0" "$ht1") of_which_lanes=$(cores "$lt0" "$lt1") receiver=$(cores "$at0" "$at1") (of $(nproc); the receiver runs elsewhere in a hospital)"
add "steady_rate_achieved_without=$(kv "$work/r0rate.out" msgs_per_s) with_routes=$(kv "$work/r1rate.out" msgs_per_s) ratio=$(ratio "$(kv "$work/r1rate.out" msgs_per_s)" "$(kv "$work/r0rate.out" msgs_per_s)") (at $rate msgs/s offered)"
add "lanes_cpu_us_per_delivery=$(awk -v t=$lane_ticks -v n=$acked_all -v hz="$(getconf CLK_TCK)" 'BEGIN { if (n == 0) print "na"; else printf "%.2f", t * 1e6 / hz / n }') (lane threads' CPU ${lane_ticks} ticks over $acked_all deliveries)"
p99max=$(sed -n 's/.* p99 \([0-9.]*\) ms p99.9.*/\1/p' "$work/r1lat.out" | sort -g | tail -n 1)
add "routes=$routes route_delivery_p99_ms_max=$p99max (target < 5 at $rate msgs/s; the ACK-only server's own p99 at $((rate * routes)) msgs/s over $routes connections: $(kv "$work/rcR.out" p99_ms))"
a=$(kv "$work/r0loop.out" msgs_per_s)
b=$(kv "$work/r1loop.out" msgs_per_s)
add "ingest_closed_loop_without_routes=$a with_${routes}_routes=$b ratio=$(ratio "$b" "$a") (target >= 0.85)"
add "steady_rate_p99_ms_without=$(kv "$work/r0rate.out" p99_ms) with_routes=$(kv "$work/r1rate.out" p99_ms)"

drain_step() { # LABEL N_ROUTES
  hdr "== r2$1. backlog drain: $drain messages while the receiver is down, then $2 route(s) drain it"
  write_routes "$2"
  stop_pid "$apid"
  start_hdxd
  "$bin/hdx" bench -d "$d" --to 127.0.0.1:$port --connections "$conns" --inflight 8 \
    --seconds 600 >/dev/null 2>&1 &
  bpid=$!
  # the bench runs until the backlog holds $drain new messages
  local s0
  s0=$(last_seq)
  while :; do
    sleep 1
    local now
    now=$(last_seq)
    [ $((now - s0)) -ge "$drain" ] && break
    kill -0 "$bpid" 2>/dev/null || break
  done
  kill "$bpid" 2>/dev/null || true
  wait "$bpid" 2>/dev/null || true
  local target
  target=$(last_seq)
  echo "backlog: $((target - s0)) messages after seq $s0"
  local t0
  t0=$(date +%s%N)
  start_ack "drain$1"
  declare -A done_at=()
  for _ in $(seq 6000); do
    local all=1
    for ((i = 1; i <= $2; i++)); do
      [ -n "${done_at[r$i]:-}" ] && continue
      local cur
      cur=$(lane_val r$i delivered)
      if [ "$cur" != na ] && [ "$cur" -ge "$target" ]; then done_at[r$i]=$(date +%s%N); else all=0; fi
    done
    [ $all = 1 ] && break
    sleep 0.05
  done
  for ((i = 1; i <= $2; i++)); do
    local ns=$((${done_at[r$i]:-$(date +%s%N)} - t0))
    echo "r$i: drained $((target - s0)) in $(awk -v n=$ns 'BEGIN{printf "%.2f", n/1e9}') s = $(awk -v m=$((target - s0)) -v n=$ns 'BEGIN{printf "%.0f", m/(n/1e9)}') msgs/s"
  done | tee "$work/drain$1.out"
  stop_pid "$hpid"
  local worst
  worst=$(sed -n 's/.* = \([0-9]*\) msgs\/s/\1/p' "$work/drain$1.out" | sort -n | head -n 1)
  local ref
  ref=$(kv "$work/rc$([ "$2" = 1 ] && echo 1 || echo N).out" msgs_per_s)
  [ "$2" = 1 ] || ref=$(awk -v a="$ref" -v n="$2" 'BEGIN { if (a == "na") print "na"; else printf "%.0f", a / n }')
  add "drain_routes=$2 max_inflight=$infl slowest_route_msgs_per_s=$worst ceiling_per_connection=$ref ratio=$(ratio "$worst" "$ref") (target >= 50000 per route)"
}
if [ "$drain" -gt 0 ]; then
  drain_step a "$routes"
  drain_step b 1
fi
stop_pid "$apid"
echo
echo "summary (hdxd CPU in r1: $cpu ticks):"
printf '  %s\n' "${summary[@]}"
