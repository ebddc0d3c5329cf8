#!/usr/bin/env bash
# DICOM C-FIND latency over a large archive (issue 14: "C-FIND at STUDY level over 100,000
# studies under 20 ms at p99"). In one run, on a fresh data directory:
#   1. DCM_FIND_STUDIES (100,000) studies, one small Secondary Capture instance each (about
#      900 bytes: bench/dicom_find_gen.py writes them with struct; five studies per patient,
#      names FAMILY^GIVEN from 40 x 30 names, dates over 2000-2024, CT/MR/US/CR), are C-STOREd
#      on DICOM TLS by the sending device MODALITY1 over DCM_FIND_STORERS (8) associations in
#      parallel, each a share of the studies: DCM_FIND_STORE=raw (the default:
#      bench/dicom_find_client.py store, data sets made in memory, every response checked to be
#      0000) or storescu (dcmtk, on Part 10 files the generator writes, one directory per
#      association). Each Success comes only once the instance is durable, as always. The time
#      is the wall time of the slowest association.
#   2. hdxd is restarted: it rebuilds the C-FIND catalogue from the encrypted log (every DICOM
#      record decrypted once); its log line event=dicom_catalog_loaded gives the cost
#      (instances, ms, MB decrypted), and hdxd's RSS after it is printed.
#   3. ONE TLS association of VIEWER1 (device viewer, role subscriber, unscoped: the principals
#      that may C-FIND) with Study Root FIND and Verification in implicit VR LE runs
#      DCM_FIND_QUERIES (500) STUDY-level C-FINDs, five shapes in turn, each with seven return
#      keys (PatientName, PatientID, StudyDate, StudyInstanceUID, AccessionNumber,
#      ModalitiesInStudy, NumberOfStudyRelatedInstances): exact PatientID (5 matches),
#      PatientName "FAMILY^G*" (about 85-255 at 100,000), a one-month StudyDate range (about
#      330), exact StudyInstanceUID (1), exact AccessionNumber (1); all below
#      dicom.max_find_results (10,000). Each is timed from its request's first byte sent to
#      its final response read, pending answers included (the client reads and keeps every
#      one), and is followed by one C-ECHO on the same association, timed the same way: the
#      same-run floor of one round trip through TLS, the client and hdxd's event loop. After
#      the timed loop every answer is checked against the archive: exactly the expected
#      studies, each with its stored values; any other final status than 0000 is an error.
# Prints key=value lines starting with "dicom_find ", then a results table (p50, p99, max in
# ms per shape and overall, mean matches per query) with the machine's facts.
# Run:   bench/dicom_find_bench.sh                       (100,000 studies, 500 queries)
#        DCM_FIND_STUDIES=3000 DCM_FIND_QUERIES=100 bench/dicom_find_bench.sh   (a quick check)
# Knobs: DCM_BIN (build dir with hdxd and hdx, ./build), DCM_FIND_STUDIES, DCM_FIND_QUERIES,
# DCM_FIND_STORERS, DCM_FIND_STORE (raw|storescu), DCM_KEEP=1 (keep the temporary directory
# and print its path), DCM_PERF=FILE (perf record hdxd during the queries).
# Loopback only; every wait and client is bounded by a timeout; exits non-zero on any failure.
set -euo pipefail
cd "$(dirname "$0")/.."
bin=${DCM_BIN:-$PWD/build}
n=${DCM_FIND_STUDIES:-100000}
nq=${DCM_FIND_QUERIES:-500}
k=${DCM_FIND_STORERS:-8}
mode=${DCM_FIND_STORE:-raw}
PY=/usr/bin/python3
CLIENT=$PWD/bench/dicom_find_client.py
GEN=$PWD/bench/dicom_find_gen.py
[ -x "$bin/hdxd" ] && [ -x "$bin/hdx" ] || { echo "dicom_find: hdxd/hdx not built in $bin"; exit 1; }
[[ $n =~ ^[0-9]+$ && $n -ge 5 && $n -le 4000000 ]] || { echo "dicom_find: DCM_FIND_STUDIES 5..4000000"; exit 1; }
[[ $nq =~ ^[0-9]+$ && $nq -ge 5 && $nq -le 100000 ]] || { echo "dicom_find: DCM_FIND_QUERIES 5..100000"; exit 1; }
[[ $k =~ ^[0-9]+$ && $k -ge 1 && $k -le 64 ]] || { echo "dicom_find: DCM_FIND_STORERS 1..64"; exit 1; }
case $mode in raw) ;; storescu) command -v storescu >/dev/null || { echo "dicom_find: no storescu (dcmtk)"; exit 1; } ;;
  *) echo "dicom_find: DCM_FIND_STORE is raw or storescu"; exit 1 ;; esac
work=$(mktemp -d)
hpid=""
cleanup() {
  local rc=$?
  set +e
  [ -n "$hpid" ] && kill "$hpid" 2>/dev/null
  for p in $(jobs -p); do kill "$p" 2>/dev/null; done
  wait 2>/dev/null
  if [ "${DCM_KEEP:-0}" = 1 ]; then
    echo "dicom_find kept $work"
  else
    rm -rf "$work"
    [ "$rc" = 0 ] || echo "dicom_find: DCM_KEEP=1 keeps the logs and the data directory"
  fi
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM
die() { echo "dicom_find FAILED: $*"; [ -n "${LOG:-}" ] && tail -n 5 "$LOG" | sed 's/^/  hdxd: /'; exit 1; }
# free_ports N: distinct loopback ports below the ephemeral range (tests/integration/lib.sh)
free_ports() {
  $PY - "$1" <<'EOF'
import random, socket, sys
socks = []
while len(socks) < int(sys.argv[1]):
    s = socket.socket()
    try:
        s.bind(("127.0.0.1", random.randint(10000, 32000)))
        socks.append(s)
    except OSError:
        s.close()
print(" ".join(str(s.getsockname()[1]) for s in socks))
EOF
}
elapsed() { $PY -c "import sys; print('%.2f' % (float(sys.argv[2]) - float(sys.argv[1])))" "$1" "$2"; }

cpu=$(sed -n 's/^model name[^:]*: //p' /proc/cpuinfo | sed -n 1p)
machine="nproc=$(nproc) cpu=\"$cpu\" mem_gb=$(awk '/^MemTotal:/ {printf "%.1f", $2 / 1048576}' /proc/meminfo) load=\"$(cut -d' ' -f1-3 /proc/loadavg)\""
echo "dicom_find machine $machine"

# ---------- the data directory: a sending device and a querying one ----------
D=$work/hdx
hdx() { "$bin/hdx" "$@" 2>>"$work/hdx.log" || { cat "$work/hdx.log"; die "hdx $1 $2"; }; }
hdx init "$D" >/dev/null
out=$(hdx device add modality -d "$D")
MCERT=$(sed -n 's/^cert=//p' <<<"$out") MKEY=$(sed -n 's/^key=//p' <<<"$out")
out=$(hdx device add viewer --role subscriber -d "$D")
VCERT=$(sed -n 's/^cert=//p' <<<"$out") VKEY=$(sed -n 's/^key=//p' <<<"$out")
hdx ae add MODALITY1 --device modality -d "$D" >/dev/null
hdx ae add VIEWER1 --device viewer -d "$D" >/dev/null
CA=$D/ca.pem

start_hdxd() { # LOGNAME -> hpid, port, LOG
  local p
  read -r mport port <<<"$(free_ports 2)"
  LOG=$work/$1
  : >"$LOG"
  "$bin/hdxd" -c "$D/hdx.conf" -o "mllp.listen=127.0.0.1:$mport" -o sub.listen= -o http.listen= \
    -o "dicom.listen=127.0.0.1:$port" 2>"$LOG" &
  hpid=$!
  for _ in $(seq 1200); do # 120 s: the catalogue is loaded before the listeners open
    grep -q 'event=listening' "$LOG" && return 0
    kill -0 "$hpid" 2>/dev/null || die "hdxd exited during start"
    sleep 0.1
  done
  die "hdxd did not listen within 120 s"
}
stop_hdxd() {
  kill -TERM "$hpid" 2>/dev/null || true
  for _ in $(seq 600); do kill -0 "$hpid" 2>/dev/null || break; sleep 0.1; done
  kill -0 "$hpid" 2>/dev/null && { kill -KILL "$hpid"; die "hdxd ignored SIGTERM for 60 s"; }
  wait "$hpid" 2>/dev/null || die "hdxd exited with status $?"
  hpid=""
}

# ---------- 1. store the archive ----------
start_hdxd hdxd.store.log
per=$(((n + k - 1) / k))
pids=()
if [ "$mode" = storescu ]; then
  g0=$(date +%s.%N)
  timeout 600 $PY "$GEN" "$work/files" "$n" "$k" || die "generating the files"
  echo "dicom_find generated files=$n bytes_each=$(stat -c %s "$work/files/s0/0.dcm") seconds=$(elapsed "$g0" "$(date +%s.%N)")"
fi
t0=$(date +%s.%N)
for ((i = 0; i < k; i++)); do
  first=$((i * per)) count=$((n - i * per < per ? n - i * per : per))
  [ "$count" -gt 0 ] || continue
  if [ "$mode" = raw ]; then
    timeout 3600 $PY "$CLIENT" store 127.0.0.1 "$port" "$CA" "$MCERT" "$MKEY" MODALITY1 "$n" "$first" "$count" \
      >"$work/store.$i.log" 2>&1 &
  else
    TCP_NODELAY=1 timeout 3600 storescu -aet MODALITY1 -aec HDX +tls "$MKEY" "$MCERT" +cf "$CA" +sd \
      127.0.0.1 "$port" "$work/files/s$i" >"$work/store.$i.log" 2>&1 &
  fi
  pids+=($!)
done
bad=0
for p in "${pids[@]}"; do wait "$p" || bad=1; done
t1=$(date +%s.%N)
[ "$bad" = 0 ] || { tail -n 3 "$work"/store.*.log; die "storing ($mode)"; }
if [ "$mode" = storescu ] && grep -l '^[EF]:' "$work"/store.*.log >/dev/null 2>&1; then
  grep -h '^[EF]:' "$work"/store.*.log | head -5; die "storescu reported errors"
fi
store_s=$(elapsed "$t0" "$t1")
store_rate=$($PY -c "import sys; print(round(int(sys.argv[1]) / float(sys.argv[2])))" "$n" "$store_s")
echo "dicom_find stored studies=$n via=$mode associations=${#pids[@]} seconds=$store_s per_s=$store_rate"
stop_hdxd

# ---------- 2. restart: the catalogue rebuilt from the log ----------
start_hdxd hdxd.find.log
cat_line=$(grep -o 'event=dicom_catalog_loaded .*' "$LOG") || die "no dicom_catalog_loaded line"
kv() { sed -n "s/.* $1=\([^ ]*\).*/\1/p" <<<"$cat_line"; }
[ "$(kv instances)" = "$n" ] && [ "$(kv studies)" = "$n" ] && [ "$(kv unreadable)" = 0 ] ||
  die "the catalogue holds $(kv instances) instances and $(kv studies) studies, not $n ($cat_line)"
cat_ms=$(kv ms) cat_mb=$($PY -c "import sys; print('%.1f' % (int(sys.argv[1]) / 1e6))" "$(kv bytes)")
rss_mb=$(awk '/^VmRSS:/ {printf "%.0f", $2 / 1024}' "/proc/$hpid/status")
echo "dicom_find catalogue instances=$n studies=$(kv studies) patients=$(kv patients) ms=$cat_ms decrypted_mb=$cat_mb hdxd_rss_mb=$rss_mb"

# ---------- 3. the queries, on one association ----------
perfpid=""
if [ -n "${DCM_PERF:-}" ]; then
  perf record --call-graph=dwarf -F 200 -p "$hpid" -o "$DCM_PERF" >/dev/null 2>&1 &
  perfpid=$!
  sleep 1
fi
cpu0=$(awk '{print $14 + $15}' "/proc/$hpid/stat")
timeout 1800 $PY "$CLIENT" query 127.0.0.1 "$port" "$CA" "$VCERT" "$VKEY" VIEWER1 "$n" "$nq" "$work/table" ||
  die "the queries"
cpu1=$(awk '{print $14 + $15}' "/proc/$hpid/stat")
[ -n "$perfpid" ] && { kill -INT "$perfpid"; wait "$perfpid" 2>/dev/null || true; }
hz=$(getconf CLK_TCK)
hdxd_cpu=$($PY -c "import sys; print('%.2f' % ((int(sys.argv[2]) - int(sys.argv[1])) / int(sys.argv[3])))" "$cpu0" "$cpu1" "$hz")
echo "dicom_find hdxd_cpu_seconds_during_queries=$hdxd_cpu"
kill -0 "$hpid" 2>/dev/null || die "hdxd died"
refused=$(grep -c 'event=dicom_find_refused' "$LOG" || true)
[ "$refused" = 0 ] || die "hdxd refused $refused queries"
stop_hdxd

echo
echo "==== DICOM C-FIND, STUDY level, $n studies, one TLS association ===="
echo "machine: $machine"
echo "store:   $n instances via $mode on ${#pids[@]} TLS associations in ${store_s} s ($store_rate/s, every C-STORE 0000)"
echo "start:   catalogue of $n instances rebuilt in ${cat_ms} ms ($cat_mb MB decrypted), hdxd RSS ${rss_mb} MB"
cat "$work/table"
echo "hdxd CPU during the queries: ${hdxd_cpu} s"
