#!/usr/bin/env bash
# The reproducible performance run behind docs/PERFORMANCE.md. Builds the release binaries, then
# measures hdx and, in the same run, the reference each figure is divided by:
#   0. the data directory's disk: fdatasync per 1/16/64/256 appended 1.1 KB records and the
#      sequential 512 KiB write rate (bench/diskflush.c)
#   a. the ceiling: an ACK-only MLLP/mTLS server over hdxd's own TLS code (bench/ackserver.c)
#      driven by hdx bench, CONNECTIONS x 1 and CONNECTIONS x INFLIGHT messages in flight
#   b. hdxd, the same two loads, each on a fresh data directory: hdx / ceiling; with the
#      per-thread CPU of hdxd (/proc/PID/task) and its commit batch sizes (event=commit_stats)
#   c. right after (b)'s 1-in-flight run, on the same data directory and the same running hdxd:
#      a steady RATE msgs/s; p99 ACK latency
#   x. the outside generator (bench/outside_gen.js, Node.js) against the ceiling and hdxd, beside
#      hdx bench: the two must agree within 25%
#   d. 512 KiB bodies, BIG_CONNECTIONS connections: MB/s / the ACK-only server's MB/s with the
#      same bodies and client (measured first in this step), and / the disk's sequential rate
#   e. PostgreSQL, CONNECTIONS clients, one ~1 KB row per transaction, fsync on: hdx / pg
#   h. 1,000 idle TLS connections (memory); hdx verify of (b)'s store, beside one core's
#      AES-256-GCM and SHA-256 rates
#   i. the HTTPS records API (bench/api_bench.sh): wrk over TLS keep-alive, GET /api/records/SEQ,
#      the patient list and a denied read, each beside the same hdxd's GET /healthz (the ceiling)
#   p. one policy decision (bench/policy_bench.c) and one Argon2id hash and verify at the
#      configured cost (bench/argon2_bench.c): absolute figures, issue 11's targets are absolute
#   optional: BENCH_AB=1 (bench/ingest_ab.sh: ingest A/B against the commit before issue 11,
#   built in a worktree; ~6 minutes), BENCH_SOAK_SECONDS=600 (RSS over a long steady run), BENCH_PROOFS=1 (inclusion
#   proofs at 10,000,000 records, bench/proof_bench.c, ~30 s and 1.8 GiB)
# Ends with a summary of key=value lines. Loopback only; every load is bounded in time.
# Environment: BENCH_SECONDS (10), BENCH_CONNECTIONS (64), BENCH_INFLIGHT (8), BENCH_RATE
# (10000), BENCH_BIG_SIZE (524288), BENCH_BIG_CONNECTIONS (4), BENCH_PG (1 when PostgreSQL is
# installed or installable with apt-get, else 0), BENCH_NODE (1 when node exists), BENCH_IDLE
# (1000), BENCH_SOAK_SECONDS (0), BENCH_PROOFS (0), BENCH_API (1; API_* knobs pass through to
# bench/api_bench.sh), BENCH_ARGON2_N (10), BENCH_AB (0; AB_* knobs pass through to
# bench/ingest_ab.sh). Defaults take about 6 minutes.
set -euo pipefail
cd "$(dirname "$0")/.."
src=$PWD
bash scripts/install-deps.sh
bash scripts/build.sh build -DHDX_BENCH=ON
bin=$PWD/build
secs=${BENCH_SECONDS:-10}
conns=${BENCH_CONNECTIONS:-64}
inflight=${BENCH_INFLIGHT:-8}
rate=${BENCH_RATE:-10000}
big=${BENCH_BIG_SIZE:-524288}
bigconns=${BENCH_BIG_CONNECTIONS:-4}
idle=${BENCH_IDLE:-1000}
soak=${BENCH_SOAK_SECONDS:-0}
node_on=${BENCH_NODE:-$(command -v node >/dev/null && echo 1 || echo 0)}
limit=$((secs + 120)) # no single load step may run longer than this (timeout)
work=$(mktemp -d)
pgwork=
pids=()
summary=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  if [ -n "$pgwork" ] && [ -f "$pgwork/data/postmaster.pid" ]; then
    runuser -u postgres -- "$pgbin/pg_ctl" -D "$pgwork/data" -m immediate stop >/dev/null 2>&1 || true
  fi
  wait 2>/dev/null || true
  rm -rf "$work" ${pgwork:+"$pgwork"}
}
trap cleanup EXIT
free_port() { /usr/bin/python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
# kv FILE KEY: the value of KEY= on the last line of FILE that has it, or na
kv() { { grep -o "\(^\| \)$2=[^ ]*" "$1" 2>/dev/null || true; } | tail -1 | sed "s/^ *$2=//;s/^$/na/" | grep . || echo na; }
# ratio A B [DIGITS]: A / B, or na
ratio() { awk -v a="$1" -v b="$2" -v d="${3:-3}" 'BEGIN { if (a == "na" || b == "na" || b + 0 == 0) print "na"; else printf "%.*f\n", d, a / b }'; }
add() { summary+=("$*"); }
head=()
add_head() { head+=("$*"); } # the main ratios, printed first
# a step's title, with the machine's load: other engineers' builds share these 2 cores, so a
# step whose load is far above the others' is suspect
hdr() { echo "$* [loadavg $(cut -d' ' -f1-3 /proc/loadavg)]"; }
# run NAME CMD...: runs a bounded load step, its output to the terminal and to $work/NAME.out
run() {
  local name=$1 rc=0
  shift
  timeout "$limit" "$@" 2>&1 | tee "$work/$name.out" || rc=$?
  [ "$rc" = 0 ] || echo "!! $name exited $rc (figures kept, but check the lines above)"
}
wait_log() { # FILE PID: until FILE says event=listening (10 s)
  for _ in $(seq 200); do
    grep -q event=listening "$1" 2>/dev/null && return 0
    kill -0 "$2" 2>/dev/null || break
    sleep 0.05
  done
  cat "$1"
  exit 1
}
start_hdxd() { # DIR [-o ...] -> port, sport, hpid
  local d=$1
  shift
  port=$(free_port)
  sport=$(free_port)
  "$bin/hdxd" -c "$d/hdx.conf" -o mllp.listen=127.0.0.1:$port -o sub.listen=127.0.0.1:$sport -o http.listen= -o dicom.listen= "$@" 2>"$d/hdxd.log" &
  hpid=$!
  pids+=("$hpid")
  wait_log "$d/hdxd.log" "$hpid"
}
stop_pid() { # PID: SIGTERM, then up to 20 s
  kill "$1" 2>/dev/null || return 0
  for _ in $(seq 400); do kill -0 "$1" 2>/dev/null || break; sleep 0.05; done
  kill -9 "$1" 2>/dev/null || true
  wait "$1" 2>/dev/null || true
}
# task_snap PID: "tid comm ticks" per thread of PID (utime + stime, clock ticks)
task_snap() {
  for t in /proc/"$1"/task/*; do
    local tid=${t##*/} comm stat
    comm=$(cat "$t/comm" 2>/dev/null) || continue
    stat=$(cat "$t/stat" 2>/dev/null) || continue
    stat=${stat##*) } # after the command name, which may hold spaces
    set -- $stat
    echo "$tid ${comm// /_} $((${12} + ${13}))"
  done
}
# task_report LABEL PID BEFORE AFTER WALL_S: per-thread CPU in cores over the interval. hdxd
# names its threads (hdx-seal, hdx-flush, hdx-walckpt, hdx-segprep); the main thread, still
# "hdxd", is the network thread.
task_report() {
  local label=$1 pid=$2 hz
  hz=$(getconf CLK_TCK)
  join <(sort "$3") <(sort "$4") | sort -n | awk -v hz="$hz" -v w="$5" -v pid="$pid" -v l="$label" '
    { c = ($5 - $3) / hz / w; n++; role = "";
      if ($2 == "hdxd") role = ($1 == pid) ? "network" : "other" n;
      else role = $2;
      printf "thread %s tid=%s comm=%s role=%s cores=%.2f\n", l, $1, $2, role, c; tot += c }
    END { printf "thread %s total_cores=%.2f threads=%d\n", l, tot, n }'
}
commit_report() { # LABEL LOG
  local line
  line=$(grep -o 'event=commit_stats.*' "$2" | tail -1 || true)
  [ -n "$line" ] || { echo "commit $1: no event=commit_stats line in $2"; return; }
  echo "commit $1: $line"
  local b r
  b=$(echo "$line" | grep -o 'batches=[0-9]*' | cut -d= -f2)
  r=$(echo "$line" | grep -o ' records=[0-9]*' | cut -d= -f2)
  echo "commit $1: mean_batch=$(ratio "$r" "$b" 1) records per flush"
  add "commit_$1_batches=${b:-na} commit_$1_records=${r:-na} commit_$1_mean_batch=$(ratio "$r" "$b" 1)"
  if echo "$line" | grep -q 'batch_hist='; then
    echo "commit $1: $(echo "$line" | grep -o 'batch_hist=[^ ]*')"
    add "commit_$1_$(echo "$line" | grep -o 'batch_hist=[^ ]*')"
  else
    echo "commit $1: (no batch_hist= field in this daemon's log)"
  fi
}
# hdx_run LABEL DIR INFLIGHT: hdx bench against the running hdxd $hpid, with per-thread CPU
hdx_run() {
  local label=$1 d=$2 n=$3 t0 t1 bpid rc=0
  timeout "$limit" "$bin/hdx" bench -d "$d" --to 127.0.0.1:$port --connections "$conns" --seconds "$secs" --inflight "$n" >"$work/$label.out" 2>&1 &
  bpid=$!
  # from the moment the load starts (after bench's own disk and crypto measurements)
  for _ in $(seq 600); do grep -q 'in flight per connection' "$work/$label.out" && break; kill -0 $bpid 2>/dev/null || break; sleep 0.02; done
  task_snap "$hpid" >"$work/$label.t0"
  t0=$(date +%s%N)
  wait $bpid || rc=$?
  t1=$(date +%s%N)
  task_snap "$hpid" >"$work/$label.t1"
  cat "$work/$label.out"
  [ "$rc" = 0 ] || echo "!! $label exited $rc (figures kept, but check the lines above)"
  task_report "$label" "$hpid" "$work/$label.t0" "$work/$label.t1" "$(awk -v a="$t0" -v b="$t1" 'BEGIN { print (b - a) / 1e9 }')" | tee "$work/$label.threads"
}
node_run() { # LABEL DIR INFLIGHT TO
  [ "$node_on" = 1 ] || return 0
  run "$1" node "$src/bench/outside_gen.js" --to "$4" --ca "$2/ca.pem" --cert "$2/devices/bench.pem" \
    --key "$2/devices/bench.key" --connections "$conns" --inflight "$3" --seconds "$secs"
}

echo "machine: $(nproc) cores, $(awk '/MemTotal/ {printf "%.0f GiB", $2/1048576}' /proc/meminfo), $(uname -r)"
echo "scratch: $work on $(df -P "$work" | awk 'NR == 2 {print $1 " (" $6 ")"}'); commit $(git rev-parse --short HEAD 2>/dev/null || echo na)"
add "machine_cores=$(nproc) seconds=$secs connections=$conns inflight=$inflight loadavg_start=$(cut -d' ' -f1 /proc/loadavg)"
t_run=$(date +%s)

echo
hdr "== 0. the disk (diskflush: fdatasync per B appended 1.1 KB records; 512 KiB sequential)"
run diskflush "$bin/diskflush" "$work" 1
for b in 1 16 64 256; do
  add "disk_batch${b}_records_per_s=$(grep "batch=$b " "$work/diskflush.out" | grep -o 'records_per_s=[^ ]*' | cut -d= -f2) disk_batch${b}_fdatasync_p50_ms=$(grep "batch=$b " "$work/diskflush.out" | grep -o 'fdatasync_p50_ms=[^ ]*' | cut -d= -f2)"
done
seq_mbps=$(kv "$work/diskflush.out" seq_mb_per_s)
add "disk_seq_mb_per_s=$seq_mbps"

echo
hdr "== a. ceiling: ACK-only server (hdxd's TLS context, nothing stored), hdx bench, $conns connections"
"$bin/hdx" init "$work/ceil" >/dev/null
aport=$(free_port)
"$bin/ackserver" -c "$work/ceil/hdx.conf" -l 127.0.0.1:$aport -t $((secs * 8 + 600)) 2>"$work/ceil/ackserver.log" &
apid=$!
pids+=("$apid")
wait_log "$work/ceil/ackserver.log" "$apid"
run ceil1 "$bin/hdx" bench -d "$work/ceil" --to 127.0.0.1:$aport --connections "$conns" --seconds "$secs" --inflight 1
run ceilN "$bin/hdx" bench -d "$work/ceil" --to 127.0.0.1:$aport --connections "$conns" --seconds "$secs" --inflight "$inflight"
echo
hdr "== x1. the outside generator (Node.js) against the same ACK-only server"
node_run nodeceil1 "$work/ceil" 1 127.0.0.1:$aport
node_run nodeceilN "$work/ceil" "$inflight" 127.0.0.1:$aport
stop_pid "$apid"
grep -o 'event=ackserver_stats.*' "$work/ceil/ackserver.log" || true
c1=$(kv "$work/ceil1.out" msgs_per_s)
cN=$(kv "$work/ceilN.out" msgs_per_s)

echo
hdr "== b. hdxd, $conns connections x 1 in flight, fresh data directory"
"$bin/hdx" init "$work/h1" >/dev/null
start_hdxd "$work/h1"
h1pid=$hpid
hdx_run hdx1 "$work/h1" 1
echo
hdr "== c. right after, same hdxd and data directory: steady $rate msgs/s, $conns connections"
run rate "$bin/hdx" bench -d "$work/h1" --to 127.0.0.1:$port --connections "$conns" --seconds "$secs" --rate "$rate"
h1rss=$(awk '/VmHWM/ {printf "%.1f", $2/1024}' /proc/$h1pid/status)
echo "server_rss_mib=$h1rss (hdxd peak, steps b and c)"
stop_pid "$h1pid"
commit_report 64x1_and_rate "$work/h1/hdxd.log"

echo
hdr "== b. hdxd, $conns connections x $inflight in flight, fresh data directory"
"$bin/hdx" init "$work/hN" >/dev/null
start_hdxd "$work/hN"
hNpid=$hpid
hdx_run hdxN "$work/hN" "$inflight"
hNrss=$(awk '/VmHWM/ {printf "%.1f", $2/1024}' /proc/$hNpid/status)
stop_pid "$hNpid"
commit_report 64x${inflight} "$work/hN/hdxd.log"
h1=$(kv "$work/hdx1.out" msgs_per_s)
hN=$(kv "$work/hdxN.out" msgs_per_s)
echo
echo "ratio: hdx / ceiling, ${conns}x1: $h1 / $c1 = $(ratio "$h1" "$c1")"
echo "ratio: hdx / ceiling, ${conns}x$inflight: $hN / $cN = $(ratio "$hN" "$cN")"

if [ "$node_on" = 1 ]; then
  echo
  hdr "== x2. the outside generator against hdxd, then hdx bench against the same hdxd at once (fresh data directory per load)"
  # The agreement pair runs back to back on one hdxd: on this shared machine, runs minutes
  # apart (step b) differ by more than 25% by themselves.
  for n in 1 "$inflight"; do
    "$bin/hdx" init "$work/n$n" >/dev/null
    "$bin/hdx" device add bench -d "$work/n$n" >/dev/null
    start_hdxd "$work/n$n"
    node_run "nodehdx$n" "$work/n$n" "$n" 127.0.0.1:$port
    run "pairhdx$n" "$bin/hdx" bench -d "$work/n$n" --to 127.0.0.1:$port --connections "$conns" --seconds "$secs" --inflight "$n"
    stop_pid "$hpid"
  done
  nc1=$(kv "$work/nodeceil1.out" msgs_per_s)
  ncN=$(kv "$work/nodeceilN.out" msgs_per_s)
  nh1=$(kv "$work/nodehdx1.out" msgs_per_s)
  nhN=$(kv "$work/nodehdx$inflight.out" msgs_per_s)
  ph1=$(kv "$work/pairhdx1.out" msgs_per_s)
  phN=$(kv "$work/pairhdx$inflight.out" msgs_per_s)
  for pair in "1 $nh1 $ph1 $nc1 $c1" "$inflight $nhN $phN $ncN $cN"; do
    set -- $pair
    agree=$(ratio "$2" "$3")
    echo "agreement ${conns}x$1 vs hdxd (back to back): node / hdx bench = $2 / $3 = $agree $(awk -v r="$agree" 'BEGIN { if (r == "na") print ""; else if (r >= 0.75 && r <= 1.25) print "(within 25%)"; else print "(NOT within 25%)" }')"
    cr=$(ratio "$4" "$5")
    bound=$(ratio "$2" "$4")
    echo "node's own ceiling ${conns}x$1: node / hdx bench against the ACK-only server = $4 / $5 = $cr $(awk -v r="$cr" -v u="$bound" 'BEGIN { if (r != "na" && r < 0.75) printf "(one Node.js thread cannot drive the ceiling; against hdxd it ran at %s of its own ceiling%s)", u, (u != "na" && u > 0.75) ? ": there the generator, not only hdxd, bounds the figure" : ", so hdxd, not node, set that figure" }')"
    add "node_${conns}x$1_hdx_msgs_per_s=$2 bench_${conns}x$1_hdx_pair_msgs_per_s=$3 node_over_bench_${conns}x$1_hdx=$agree node_${conns}x$1_ceiling_msgs_per_s=$4 node_over_bench_${conns}x$1_ceiling=$cr"
  done
fi

echo
hdr "== d. ${big}-byte bodies, $bigconns connections, beside the ACK-only server with the same bodies and the disk's sequential rate (step 0)"
bigmax=$((big > 1048576 ? big : 1048576))
"$bin/hdx" init "$work/bigceil" >/dev/null
sed -i "s/^max_message = .*/max_message = $bigmax/" "$work/bigceil/hdx.conf"
aport=$(free_port)
"$bin/ackserver" -c "$work/bigceil/hdx.conf" -l 127.0.0.1:$aport -t $((secs * 2 + 120)) 2>"$work/bigceil/ackserver.log" &
apid=$!
pids+=("$apid")
wait_log "$work/bigceil/ackserver.log" "$apid"
run bigceil "$bin/hdx" bench -d "$work/bigceil" --to 127.0.0.1:$aport --connections "$bigconns" --seconds "$secs" --size "$big"
stop_pid "$apid"
"$bin/hdx" init "$work/big" >/dev/null
start_hdxd "$work/big" -o mllp.max_message=$bigmax
run big "$bin/hdx" bench -d "$work/big" --to 127.0.0.1:$port --connections "$bigconns" --seconds "$secs" --size "$big"
stop_pid "$hpid"
big_mbps=$(kv "$work/big.out" mb_per_s)
bigceil_mbps=$(kv "$work/bigceil.out" mb_per_s)
echo "ratio: hdx MB/s / ACK-only server MB/s (same bodies) = $big_mbps / $bigceil_mbps = $(ratio "$big_mbps" "$bigceil_mbps")"
echo "ratio: hdx MB/s / disk sequential MB/s = $big_mbps / $seq_mbps = $(ratio "$big_mbps" "$seq_mbps")"
echo "ratio: ACK-only server MB/s / disk sequential MB/s = $bigceil_mbps / $seq_mbps = $(ratio "$bigceil_mbps" "$seq_mbps")"

pg_on=${BENCH_PG:-auto}
pgbin=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -1 || true)
if [ "$pg_on" = auto ]; then
  if [ -z "$pgbin" ]; then
    apt-get install -y postgresql >/dev/null 2>&1 || sudo apt-get install -y postgresql >/dev/null 2>&1 || true
    pgbin=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -1 || true)
  fi
  pg_on=$([ -n "$pgbin" ] && echo 1 || echo 0)
fi
pg_tps=na
if [ "$pg_on" = 1 ] && [ -n "$pgbin" ] && id postgres >/dev/null 2>&1; then
  echo
  hdr "== e. PostgreSQL ($("$pgbin/postgres" --version | awk '{print $3}')), $conns clients, one ~1 KB row per transaction, fsync=on, synchronous_commit=on, $secs s"
  pgwork=$(mktemp -d) # postgres cannot enter $work (root's, 0700); same file system
  chown postgres "$pgwork"
  pgport=$(free_port)
  runuser -u postgres -- "$pgbin/initdb" -D "$pgwork/data" -A trust -U postgres -N >/dev/null
  runuser -u postgres -- "$pgbin/pg_ctl" -D "$pgwork/data" -l "$pgwork/log" -w -t 60 \
    -o "-c port=$pgport -c listen_addresses='' -c unix_socket_directories=$pgwork -c fsync=on -c synchronous_commit=on -c full_page_writes=on -c max_connections=$((conns + 20)) -c shared_buffers=256MB" start >/dev/null
  # the table of BASELINES.md: like the record store, a 32-byte blind index, a 1,000-byte body
  "$pgbin/psql" -q -h "$pgwork" -p "$pgport" -U postgres -d postgres -c \
    "CREATE TABLE rec (id bigserial PRIMARY KEY, sender text, type text, t timestamptz, blind bytea, body text); CREATE INDEX ON rec (blind, t);"
  cat >"$pgwork/insert.sql" <<'EOF'
\set r random(1, 1000000000)
INSERT INTO rec (sender, type, t, blind, body) VALUES ('bench', 'ORU^R01', now(), sha256(int8send(:r)), repeat(md5(:r::text), 31) || '12345678');
EOF
  run pg "$pgbin/pgbench" -n -M prepared -h "$pgwork" -p "$pgport" -U postgres -c "$conns" -j 2 -T "$secs" -f "$pgwork/insert.sql" postgres
  pg_tps=$(grep -o 'tps = [0-9.]*' "$work/pg.out" | tail -1 | awk '{print $3}')
  pg_tps=${pg_tps:-na}
  echo "pg: rows=$("$pgbin/psql" -At -h "$pgwork" -p "$pgport" -U postgres -d postgres -c 'SELECT count(*) FROM rec') avg_row_bytes=$("$pgbin/psql" -At -h "$pgwork" -p "$pgport" -U postgres -d postgres -c 'SELECT avg(pg_column_size(rec.*))::int FROM rec')"
  runuser -u postgres -- "$pgbin/pg_ctl" -D "$pgwork/data" -m fast -w stop >/dev/null
  echo "ratio: hdx ${conns}x1 / pg ${conns} clients = $h1 / $pg_tps = $(ratio "$h1" "$pg_tps")"
else
  echo
  hdr "== e. PostgreSQL: skipped (BENCH_PG=$pg_on, binaries: ${pgbin:-none})"
fi

echo
hdr "== h. $idle idle TLS connections"
"$bin/hdx" init "$work/c" >/dev/null
"$bin/hdx" device add idle -d "$work/c" >/dev/null
start_hdxd "$work/c" -o net.max_per_principal=$((idle + 16)) # all from one certificate
timeout "$limit" /usr/bin/python3 bench/idle_connections.py "$work/c" "$port" "$hpid" "$idle" \
  "$work/c/devices/idle.pem" "$work/c/devices/idle.key" | tee "$work/idle.out" || true
stop_pid "$hpid"

echo
hdr "== h. hdx verify of the store from step b (${conns}x1 and the steady run; $(nproc) threads)"
openssl speed -seconds 3 -bytes 1024 -evp aes-256-gcm 2>/dev/null | tail -1 | sed 's/^/machine (one core, 1 KiB): /'
openssl speed -seconds 3 -bytes 1024 -evp sha256 2>/dev/null | tail -1 | sed 's/^/machine (one core, 1 KiB): /'
# The target is per core: records over the CPU seconds (user + system) verify used, beside
# the wall time its threads took.
for mode in "" --fast; do
  t0=$(date +%s%N)
  TIMEFORMAT='%3U %3S'
  { time "$bin/hdx" verify -d "$work/h1" $mode >"$work/verify$mode.full"; } 2>"$work/verify$mode.cpu"
  tail -1 "$work/verify$mode.full" | tee "$work/verify$mode.out"
  ms=$((($(date +%s%N) - t0) / 1000000))
  n=$(grep -o 'records=[0-9]*' "$work/verify$mode.out" | cut -d= -f2)
  cpu_s=$(awk '{print $1 + $2}' "$work/verify$mode.cpu")
  per_cpu_s=$(awk -v n="${n:-0}" -v c="$cpu_s" 'BEGIN { if (c > 0) printf "%.0f", n / c; else print "na" }')
  echo "verify $mode: $ms ms wall, $cpu_s CPU seconds, $per_cpu_s records per CPU second"
  add "verify${mode:+_${mode#--}}_ms=$ms verify${mode:+_${mode#--}}_records=$n verify${mode:+_${mode#--}}_cpu_s=$cpu_s verify${mode:+_${mode#--}}_records_per_cpu_s=$per_cpu_s"
done

if [ "${BENCH_API:-1}" = 1 ]; then
  echo
  hdr "== i. the HTTPS records API (wrk, TLS keep-alive) beside GET /healthz on the same hdxd"
  API_BIN=$bin API_SECONDS=${API_SECONDS:-$secs} timeout $((secs * 6 + 300)) bash bench/api_bench.sh 2>&1 | tee "$work/api.out" || echo "!! api_bench exited"
  add "$(grep -h '^api ratio_\|^api ceiling_mean' "$work/api.out" | sed 's/^api //;s/ loadavg_end=[^ ]*//;s/ ceiling_per_s=[^ ]*//' | tr '\n' ' ' | sed 's/\(^\| \)\([a-z]\)/\1api_\2/g;s/ $//')"
  add "api_seq_p99_ms=$(grep '^api seq ' "$work/api.out" | grep -o 'p99_ms=[^ ]*' | cut -d= -f2) api_seq_hdxd_cores=$(grep '^api seq ' "$work/api.out" | grep -o 'hdxd_cores=[^ ]*' | cut -d= -f2) api_seq_target_20000=$(grep "^api target" "$work/api.out" | awk "{print \$NF}")"
fi

echo
hdr "== p. one policy decision (policy_bench) and one Argon2id hash/verify at the default cost (argon2_bench)"
run policy "$bin/policy_bench"
run argon2 "$bin/argon2_bench" 3 65536 "${BENCH_ARGON2_N:-10}"
add "policy_p50_ns=$(kv "$work/policy.out" p50_ns) policy_p99_ns=$(kv "$work/policy.out" p99_ns) argon2_hash_p50_ms=$(kv "$work/argon2.out" hash_p50_ms) argon2_verify_p50_ms=$(kv "$work/argon2.out" verify_p50_ms)"

if [ "${BENCH_AB:-0}" = 1 ]; then
  echo
  hdr "== ab. ingest with issue 11's authorization and audit vs the commit before it (bench/ingest_ab.sh)"
  AB_BIN=$bin AB_SECONDS=${AB_SECONDS:-$secs} AB_CONNECTIONS=${AB_CONNECTIONS:-$conns} bash bench/ingest_ab.sh 2>&1 | tee "$work/ab.out" || echo "!! ingest_ab exited"
  while read -r l; do add "${l#ab summary }"; done < <(grep '^ab summary' "$work/ab.out")
fi

if [ "$soak" -gt 0 ] 2>/dev/null; then
  echo
  hdr "== soak: $soak s at $rate msgs/s, $conns connections, hdxd RSS every 10 s"
  "$bin/hdx" init "$work/s" >/dev/null
  start_hdxd "$work/s"
  (for _ in $(seq $((soak / 10 + 3))); do
    awk -v t="$(date +%s)" '/VmRSS/ {print "rss t=" t " kib=" $2}' /proc/"$hpid"/status 2>/dev/null || break
    sleep 10
  done) >"$work/soak.rss" &
  spid=$!
  pids+=("$spid")
  limit=$((soak + 120)) run soak "$bin/hdx" bench -d "$work/s" --to 127.0.0.1:$port --connections "$conns" --seconds "$soak" --rate "$rate"
  kill "$spid" 2>/dev/null || true
  stop_pid "$hpid"
  # The whole series, then the growth over the last five sixths: the first minute fills the
  # page cache and the duplicate window, after which RSS must stay flat.
  awk '{split($3, a, "="); printf "%s%.1f", NR > 1 ? "," : "soak_series_mib=", a[2]/1024} END {print ""}' "$work/soak.rss"
  awk '{split($3, a, "="); k[NR] = a[2]} END { if (NR) { m = 0; for (i = 1; i <= NR; i++) if (k[i] > m) m = k[i];
    s = int(NR / 6) + 1;
    printf "soak: samples=%d rss_first_mib=%.1f rss_sixth_mib=%.1f rss_last_mib=%.1f rss_max_mib=%.1f\n", NR, k[1]/1024, k[s]/1024, k[NR]/1024, m/1024 } }' "$work/soak.rss" | tee "$work/soak.sum"
  add "soak_$(grep -o 'rss_first_mib=.*' "$work/soak.sum" | sed 's/ / soak_/g')"
fi

if [ "${BENCH_PROOFS:-0}" = 1 ]; then
  echo
  hdr "== inclusion proofs at 10,000,000 records"
  "$bin/proof_bench" "$work/p" 10000000 10000
fi

add_head "ceiling_${conns}x1_msgs_per_s=$c1 hdx_${conns}x1_msgs_per_s=$h1 hdx_over_ceiling_${conns}x1=$(ratio "$h1" "$c1") hdx_${conns}x1_p99_ms=$(kv "$work/hdx1.out" p99_ms) ceiling_${conns}x1_p99_ms=$(kv "$work/ceil1.out" p99_ms)"
add_head "ceiling_${conns}x${inflight}_msgs_per_s=$cN hdx_${conns}x${inflight}_msgs_per_s=$hN hdx_over_ceiling_${conns}x${inflight}=$(ratio "$hN" "$cN") hdx_${conns}x${inflight}_p99_ms=$(kv "$work/hdxN.out" p99_ms) ceiling_${conns}x${inflight}_p99_ms=$(kv "$work/ceilN.out" p99_ms)"
add_head "rate_target=$rate rate_msgs_per_s=$(kv "$work/rate.out" msgs_per_s) rate_p50_ms=$(kv "$work/rate.out" p50_ms) rate_p99_ms=$(kv "$work/rate.out" p99_ms) rate_held=$(grep -q 'NOT held' "$work/rate.out" && echo no || echo yes) rate_after_closed_loop_same_dir=yes"
add_head "big_size=$big big_connections=$bigconns big_msgs_per_s=$(kv "$work/big.out" msgs_per_s) big_mb_per_s=$big_mbps big_p99_ms=$(kv "$work/big.out" p99_ms) bigceil_mb_per_s=$bigceil_mbps bigceil_p99_ms=$(kv "$work/bigceil.out" p99_ms) big_over_bigceil=$(ratio "$big_mbps" "$bigceil_mbps") disk_seq_mb_per_s=$seq_mbps big_over_disk_seq=$(ratio "$big_mbps" "$seq_mbps") bigceil_over_disk_seq=$(ratio "$bigceil_mbps" "$seq_mbps")"
add_head "pg_tps=$pg_tps hdx_over_pg=$(ratio "$h1" "$pg_tps")"
add_head "hdx_over_disk_batch1=$(ratio "$h1" "$(grep 'batch=1 ' "$work/diskflush.out" | grep -o 'records_per_s=[^ ]*' | cut -d= -f2)")"
for l in hdx1 hdxN; do
  add "$(awk -v l="$l" '/ role=/ { for (i = 3; i <= NF; i++) { split($i, kv, "="); v[kv[1]] = kv[2] } printf "cpu_%s_%s=%s ", l, v["role"], v["cores"] }
    /total_cores=/ { split($3, kv, "="); printf "cpu_%s_total=%s", l, kv[2] }' "$work/$l.threads" 2>/dev/null)"
done
add "server_rss_mib_64x1_and_rate=$h1rss server_rss_mib_64x${inflight}=$hNrss idle_per_connection_kib=$(kv "$work/idle.out" per_connection_kib)"
add "loadavg_end=$(cut -d' ' -f1 /proc/loadavg) run_seconds=$(($(date +%s) - t_run))"
echo
echo "== summary (each figure beside its same-run reference)"
printf '%s\n' "${head[@]}" "${summary[@]}"
