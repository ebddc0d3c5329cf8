#!/usr/bin/env bash
# DICOM C-FIND latency over a large archive (issue 14: "C-FIND at STUDY level over 100,000
# studies under 20 ms at p99"). One run:
#   1. DCM_FIND_STUDIES studies (100,000), one small Secondary Capture instance each, are
#      C-STOREd by DCM_FIND_STORERS (8) associations in parallel on hdxd's plaintext port
#      (bench/dicom_find_client.py store: each Success only once durable, as always);
#   2. hdxd is restarted: the C-FIND catalogue is rebuilt from the encrypted log (every
#      instance decrypted once; its log line dicom_catalog_loaded gives the time);
#   3. one DICOM TLS association of a receiving device (role subscriber) runs DCM_FIND_QUERIES
#      (500) STUDY-level C-FINDs in five shapes (exact Patient ID: 5 matches; Patient's Name
#      FAMILY^G*: about 200; a one-month Study Date range: about 330; exact Study Instance UID
#      and Accession Number: 1), each returning seven keys, timed from the request's first byte
#      to the final response, and as many C-ECHOs on the same association: the same-run floor
#      of one round trip through TLS and hdxd's event loop.
# Knobs: DCM_BIN (build), DCM_FIND_STUDIES, DCM_FIND_QUERIES, DCM_FIND_STORERS, DCM_KEEP=1
# (keep the data directory), DCM_PERF=FILE (perf record hdxd during the queries). Prints key=value lines starting with "dicom_find ". Loopback only;
# bounded by timeouts.
set -euo pipefail
cd "$(dirname "$0")/.."
bin=${DCM_BIN:-$PWD/build}
n=${DCM_FIND_STUDIES:-100000}
nq=${DCM_FIND_QUERIES:-500}
k=${DCM_FIND_STORERS:-8}
PY=/usr/bin/python3
CLIENT=$PWD/bench/dicom_find_client.py
work=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null; wait 2>/dev/null; [ "${DCM_KEEP:-0}" = 1 ] && echo "kept $work" || rm -rf "$work"' EXIT
free_port() { $PY -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
echo "dicom_find machine nproc=$(nproc) cpu=\"$(sed -n 's/^model name[^:]*: //p' /proc/cpuinfo | sed -n 1p)\""

D=$work/hdx
"$bin/hdx" init "$D" >/dev/null
"$bin/hdx" device add modality -d "$D" >/dev/null
out=$("$bin/hdx" device add viewer --role subscriber -d "$D")
CERT=$(sed -n 's/^cert=//p' <<<"$out") KEY=$(sed -n 's/^key=//p' <<<"$out")
"$bin/hdx" ae add MODALITY1 --device modality -d "$D" >/dev/null
"$bin/hdx" ae add VIEWER1 --device viewer -d "$D" >/dev/null
start_hdxd() { # LOG -> hpid, tport, pport
  tport=$(free_port) pport=$(free_port)
  : >"$1"
  "$bin/hdxd" -c "$D/hdx.conf" -o mllp.listen=127.0.0.1:$(free_port) -o sub.listen=127.0.0.1:$(free_port) \
    -o http.listen= -o dicom.listen=127.0.0.1:$tport -o dicom.plain_listen=127.0.0.1:$pport 2>"$1" &
  hpid=$!
  for _ in $(seq 600); do grep -q event=listening "$1" && return 0; sleep 0.1; done
  tail -5 "$1"; exit 1
}

start_hdxd "$work/hdxd.0.log"
t0=$(date +%s.%N)
per=$(((n + k - 1) / k))
pids=()
for ((i = 0; i < k; i++)); do
  first=$((i * per)); count=$((n - first < per ? n - first : per))
  [ "$count" -gt 0 ] || continue
  timeout 3600 $PY "$CLIENT" store 127.0.0.1 "$pport" MODALITY1 "$first" "$count" >"$work/store.$i.log" 2>&1 &
  pids+=($!)
done
for p in "${pids[@]}"; do wait "$p" || { cat "$work"/store.*.log; echo "dicom_find store failed"; exit 1; }; done
t1=$(date +%s.%N)
echo "dicom_find stored studies=$n associations=$k seconds=$($PY -c "print(round($t1 - $t0, 1))") per_s=$($PY -c "print(round($n / ($t1 - $t0)))")"
kill "$hpid"; wait "$hpid" 2>/dev/null || true

start_hdxd "$work/hdxd.1.log"
echo "dicom_find $(grep -o 'event=dicom_catalog_loaded.*' "$work/hdxd.1.log")"
grep -q "event=dicom_catalog_loaded instances=$n " "$work/hdxd.1.log" || { echo "dicom_find catalogue incomplete"; exit 1; }
rss=$(awk '/^VmRSS:/ {print $2}' "/proc/$hpid/status")
echo "dicom_find hdxd_rss_kb=$rss"
[ -n "${DCM_PERF:-}" ] && { perf record -g -p "$hpid" -o "$DCM_PERF" 2>/dev/null & perfpid=$!; sleep 1; }
timeout 1800 $PY "$CLIENT" query 127.0.0.1 "$tport" "$D/ca.pem" "$CERT" "$KEY" VIEWER1 "$nq" "$n"
[ -n "${DCM_PERF:-}" ] && { kill -INT "$perfpid"; wait "$perfpid" 2>/dev/null || true; }
echo "dicom_find hdxd_cpu_s=$(awk '{print ($14 + $15) / 100}' "/proc/$hpid/stat")"
kill "$hpid"; wait "$hpid" 2>/dev/null || true
