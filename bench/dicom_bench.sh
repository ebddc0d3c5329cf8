#!/usr/bin/env bash
# DICOM C-STORE throughput, side by side with Orthanc (issue 14: ">= 3x Orthanc's instances/s on
# one and on four associations for ~40 KB and ~512 KB instances, while encrypting and logging
# every instance"). In one run, on the same files and with the same client (dcmtk storescu):
# (dcmtk leaves Nagle's algorithm on unless TCP_NODELAY=1 is in its environment; then a
# C-STORE's data set waits for the server's delayed ACK of its command, up to 40 ms, on every
# instance. DCM_NODELAY=1, the default, sets it for storescu and Orthanc alike, so Orthanc is
# measured at its best; DCM_NODELAY=0 measures the client as it comes. hdxd acknowledges quickly
# either way: net/dicom_session.c sets TCP_QUICKACK.)
#   - Orthanc 1.10.1 (Debian), plaintext DICOM (its default; it syncs each stored file);
#   - hdxd on DICOM TLS (its default: mutual TLS 1.3, the calling AE bound to the certificate);
#   - hdxd on its plaintext port (the same path without TLS, as Orthanc is measured);
#   - the ceiling: dcmtk's own storescp --ignore (it receives every data set and answers
#     Success, stores nothing), plaintext and over TLS 1.3 with hdx's server certificate: what
#     this client and this machine can do at all, the DICOM analogue of the ACK-only MLLP
#     server. 3x Orthanc above this ceiling cannot be reached by any server here. With one
#     association storescu waits for each Success, so no server that makes an instance durable
#     before answering can pass 1 / (1 / ceiling + one 512 KiB write and fdatasync of this disk):
#     durable_bound_per_s (for the 40 KB files it is a loose bound: the write is smaller).
# Instances: pydicom writes DCM_N copies of CT_small.dcm (about 39 KB) and of a 512 x 512 x 16-bit
# CT (about 512 KB) under new SOP Instance UIDs. For 1 and 4 associations, each association is
# one storescu process sending its share; instances/s = files / wall time of the slowest one
# (process start and association included, the same for every server). Each server gets every
# file set once, on a fresh data directory; runs alternate between servers.
# The machine's limits in the same run: the disk (bench/diskflush.c: one 1.1 KB append and
# fdatasync, the floor of one commit), AES-256-GCM and SHA-256 over 16 KiB blocks (openssl speed,
# one core). Knobs: DCM_BIN (build), DCM_N (files per set, 400), DCM_SIZES ("40k 512k"),
# DCM_NODELAY (1).
# Prints key=value lines starting with "dicom ". Loopback only; bounded by timeouts.
set -euo pipefail
cd "$(dirname "$0")/.."
bin=${DCM_BIN:-$PWD/build}
n=${DCM_N:-400}
sizes=${DCM_SIZES:-40k 512k}
nodelay=${DCM_NODELAY:-1}
if [ "$nodelay" = 1 ]; then export TCP_NODELAY=1; else unset TCP_NODELAY; fi
PY=/usr/bin/python3
PD=/usr/lib/python3/dist-packages/pydicom/data
command -v Orthanc >/dev/null || { echo "Orthanc is not installed (apt-get install orthanc)"; exit 1; }
if [ ! -x "$bin/diskflush" ]; then
  cmake -S . -B "$bin" -DHDX_BENCH=ON >/dev/null && cmake --build "$bin" --target diskflush >/dev/null
fi
work=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null; wait 2>/dev/null; rm -rf "$work"' EXIT
free_port() { $PY -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

# ---------- the files ----------
for size in $sizes; do
  $PY - "$PD/test_files/CT_small.dcm" "$work/files-$size" "$size" "$n" <<'EOF'
import os, random, sys, pydicom
src, out, size, n = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
ds = pydicom.dcmread(src)
if size == "512k":
    ds.Rows = ds.Columns = 512
    ds.PixelData = random.randbytes(512 * 512 * 2)
os.makedirs(out)
for i in range(n):
    uid = f"2.25.{random.getrandbits(100)}"
    ds.SOPInstanceUID = uid
    ds.file_meta.MediaStorageSOPInstanceUID = uid
    ds.save_as(f"{out}/{i:05d}.dcm", write_like_original=True)
EOF
  echo "dicom files size=$size n=$n bytes_each=$(stat -c %s "$work/files-$size/00000.dcm")"
done

# ---------- the machine's limits, same run ----------
mkdir -p "$work/probe"
"$bin/diskflush" "$work/probe" 1 64 >"$work/disk.out"
echo "dicom disk $(grep 'batch=1 ' "$work/disk.out")"
echo "dicom disk $(grep 'instance_kib=' "$work/disk.out")"
inst_ms=$(sed -n 's/.*write_sync_p50_ms=\([0-9.]*\).*/\1/p' "$work/disk.out")
aes=$(openssl speed -seconds 2 -bytes 16384 -evp aes-256-gcm 2>/dev/null | awk '/^AES-256-GCM|^aes-256-gcm/ {print $NF}')
sha=$(openssl speed -seconds 2 -bytes 16384 -evp sha256 2>/dev/null | awk '/^sha256/ {print $NF}')
echo "dicom crypto aes_256_gcm_16k=${aes} sha256_16k=${sha} (bytes/s, one core)"

# ---------- servers ----------
start_orthanc() { # -> opid, oport
  local d=$work/orthanc.$RANDOM
  mkdir -p "$d/db"
  oport=$(free_port)
  cat >"$d/orthanc.json" <<EOF
{ "Name": "bench", "StorageDirectory": "$d/db", "IndexDirectory": "$d/db", "Plugins": [],
  "HttpPort": $(free_port), "RemoteAccessAllowed": false, "AuthenticationEnabled": false,
  "DicomAet": "HDX", "DicomPort": $oport, "DicomCheckCalledAet": true,
  "DicomAlwaysAllowEcho": true, "DicomAlwaysAllowStore": true, "DicomTlsEnabled": false }
EOF
  Orthanc "$d/orthanc.json" >"$d/log" 2>&1 &
  opid=$!
  for _ in $(seq 100); do echoscu -aet BENCH -aec HDX 127.0.0.1 "$oport" 2>/dev/null && return 0; sleep 0.1; done
  echo "Orthanc did not start"; exit 1
}
start_hdxd() { # -> hpid, tport, pport, D, CERT, KEY
  D=$work/hdx.$RANDOM
  "$bin/hdx" init "$D" >/dev/null
  local out
  out=$("$bin/hdx" device add bench -d "$D")
  CERT=$(sed -n 's/^cert=//p' <<<"$out") KEY=$(sed -n 's/^key=//p' <<<"$out")
  "$bin/hdx" ae add BENCH --device bench -d "$D" >/dev/null
  tport=$(free_port) pport=$(free_port)
  : >"$D/hdxd.log"
  "$bin/hdxd" -c "$D/hdx.conf" -o mllp.listen=127.0.0.1:$(free_port) -o sub.listen= -o http.listen= \
    -o dicom.listen=127.0.0.1:$tport -o dicom.plain_listen=127.0.0.1:$pport 2>"$D/hdxd.log" &
  hpid=$!
  for _ in $(seq 200); do grep -q event=listening "$D/hdxd.log" && return 0; sleep 0.05; done
  cat "$D/hdxd.log"; exit 1
}
start_ceiling() { # [TLS args...] -> cpid, cport
  cport=$(free_port)
  mkdir -p "$work/ceiling"
  storescp --fork --ignore -aet HDX -od "$work/ceiling" "$@" "$cport" >"$work/ceiling.log" 2>&1 &
  cpid=$!
  for _ in $(seq 100); do
    echoscu -aet BENCH -aec HDX "${CEIL_CLIENT[@]}" 127.0.0.1 "$cport" 2>/dev/null && return 0
    sleep 0.1
  done
  echo "storescp did not start"; cat "$work/ceiling.log"; exit 1
}
# run SERVER_LABEL PORT ASSOCS SIZE [TLS args...]: prints instances/s
run() {
  local label=$1 port=$2 k=$3 size=$4
  shift 4
  local files=("$work/files-$size"/*.dcm) pids=() t0 t1 i
  t0=$(date +%s.%N)
  for ((i = 0; i < k; i++)); do
    local share=()
    for ((j = i; j < ${#files[@]}; j += k)); do share+=("${files[j]}"); done
    timeout 600 storescu -aet BENCH -aec HDX "$@" 127.0.0.1 "$port" "${share[@]}" >"$work/scu.$label.$k.$size.$i.log" 2>&1 &
    pids+=($!)
  done
  local bad=0
  for p in "${pids[@]}"; do wait "$p" || bad=1; done
  t1=$(date +%s.%N)
  [ $bad = 0 ] || { echo "dicom run=$label failed"; tail -3 "$work"/scu."$label".$k.$size.*.log; exit 1; }
  $PY -c "print(round(${#files[@]} / ($t1 - $t0)))"
}

for size in $sizes; do
  for k in 1 4; do
    start_orthanc
    o=$(run orthanc "$oport" "$k" "$size")
    kill "$opid"; wait "$opid" 2>/dev/null || true
    start_hdxd
    t=$(run hdx-tls "$tport" "$k" "$size" +tls "$KEY" "$CERT" +cf "$D/ca.pem")
    kill "$hpid"; wait "$hpid" 2>/dev/null || true
    stored=$("$bin/hdx" query -d "$D" --kind dicom --count)
    [ "$stored" = "$n" ] || { echo "dicom hdx stored $stored of $n"; exit 1; }
    start_hdxd
    p=$(run hdx-plain "$pport" "$k" "$size")
    kill "$hpid"; wait "$hpid" 2>/dev/null || true
    CEIL_CLIENT=()
    start_ceiling
    cp_=$(run ceiling-plain "$cport" "$k" "$size")
    kill "$cpid"; wait "$cpid" 2>/dev/null || true
    CEIL_CLIENT=(+tls "$KEY" "$CERT" +cf "$D/ca.pem")
    start_ceiling +tls "$D/server.key" "$D/server.pem" +cf "$D/ca.pem"
    ct=$(run ceiling-tls "$cport" "$k" "$size" "${CEIL_CLIENT[@]}")
    kill "$cpid"; wait "$cpid" 2>/dev/null || true
    echo "dicom size=$size associations=$k nodelay=$nodelay orthanc_per_s=$o hdx_tls_per_s=$t hdx_plain_per_s=$p" \
      "ceiling_plain_per_s=$cp_ ceiling_tls_per_s=$ct" \
      "ratio_tls=$($PY -c "print(round($t / $o, 2))") ratio_plain=$($PY -c "print(round($p / $o, 2))")" \
      "tls_of_ceiling=$($PY -c "print(round($t / $ct, 2))") plain_of_ceiling=$($PY -c "print(round($p / $cp_, 2))")" \
      "ceiling_tls_over_orthanc=$($PY -c "print(round($ct / $o, 2))")" \
      "durable_bound_per_s=$([ "$k" = 1 ] && $PY -c "print(round(1 / (1 / $ct + $inst_ms / 1000)))" || echo -)"
  done
done
