#!/usr/bin/env bash
# DICOM route throughput (docs/ROUTES.md "DICOM routes"): how fast a route of kind dicom drains a
# backlog of stored instances into a real Storage SCP, beside the same SCP fed directly by
# dcmtk's storescu in the same run.
#   - the destination: dcmtk storescp writing every data set to a directory as received (+B, one
#     file per C-STORE: +uf), plaintext and over TLS 1.3 with the data directory's server
#     certificate (client certificate required);
#   - the reference: storescu sending the same files to that same storescp on one association
#     (what one SCU that already has the files in clear can push into this destination: it
#     reads and parses each file; hdx reads each instance from its log, decrypts it and asks the
#     policy engine first);
#   - hdx: DCM_N instances are stored into hdxd (storescu on its plaintext port) while the route's
#     destination is down; then storescp starts and the time until it has written every file
#     is the drain time (the route's lane backs off at most backoff_max_ms = 50 ms before it
#     tries again, counted in).
# Instances as in bench/dicom_bench.sh: copies of CT_small.dcm (39 KB) and of a 512 x 512 x 16-bit
# CT (531 KB) under new SOP Instance UIDs. Same-run machine limits: AES-256-GCM and SHA-256 over
# 16 KiB (openssl speed, one core). Knobs: DCM_BIN (build), DCM_N (files per set, 400),
# DCM_SIZES ("40k 512k"). Prints key=value lines starting with "dicom_route ". Loopback only;
# every wait bounded.
set -euo pipefail
cd "$(dirname "$0")/.."
bin=${DCM_BIN:-$PWD/build}
n=${DCM_N:-400}
sizes=${DCM_SIZES:-40k 512k}
export TCP_NODELAY=1 # dcmtk: see bench/dicom_bench.sh
PY=/usr/bin/python3
PD=/usr/lib/python3/dist-packages/pydicom/data
work=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null; wait 2>/dev/null; rm -rf "$work"' EXIT
free_port() { $PY -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
now() { date +%s.%N; }

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
done
aes=$(openssl speed -seconds 2 -bytes 16384 -evp aes-256-gcm 2>/dev/null | awk '/^AES-256-GCM|^aes-256-gcm/ {print $NF}')
sha=$(openssl speed -seconds 2 -bytes 16384 -evp sha256 2>/dev/null | awk '/^sha256/ {print $NF}')
echo "dicom_route crypto aes_256_gcm_16k=${aes} sha256_16k=${sha} (bytes/s, one core)"

# one data directory for its certificates (storescp's TLS identity and the route's client)
C=$work/pki
"$bin/hdx" init "$C" >/dev/null
out=$("$bin/hdx" device add bench -d "$C")
CERT=$(sed -n 's/^cert=//p' <<<"$out") KEY=$(sed -n 's/^key=//p' <<<"$out")
SCP_TLS=(+tls "$C/server.key" "$C/server.pem" +cf "$C/ca.pem" --require-peer-cert)
SCU_TLS=(+tls "$KEY" "$CERT" +cf "$C/ca.pem")

nfiles() { find "$1" -maxdepth 1 -type f | wc -l; }
start_scp() { # DIR PORT [TLS...] -> spid
  local dir=$1 port=$2
  shift 2
  mkdir -p "$dir"
  storescp +B +uf -aet PACS -od "$dir" "$@" "$port" >"$dir.log" 2>&1 &
  spid=$!
}
wait_files() { # DIR N TIMEOUT_S
  local deadline
  deadline=$(($(date +%s) + $3))
  while [ "$(nfiles "$1")" -lt "$2" ]; do
    [ "$(date +%s)" -lt "$deadline" ] || { echo "dicom_route timeout: $(nfiles "$1") of $2 in $1"; return 1; }
    sleep 0.02
  done
}

for size in $sizes; do
  files=("$work/files-$size"/*.dcm)
  for mode in plain tls; do
    tls=()
    [ "$mode" = tls ] && tls=("${SCP_TLS[@]}")
    # the reference: storescu straight into the destination, one association
    port=$(free_port)
    start_scp "$work/ref-$size-$mode" "$port" "${tls[@]}"
    for _ in $(seq 100); do
      echoscu -aet BENCH -aec PACS ${tls:+"${SCU_TLS[@]}"} 127.0.0.1 "$port" 2>/dev/null && break
      sleep 0.05
    done
    t0=$(now)
    timeout 600 storescu -aet BENCH -aec PACS ${tls:+"${SCU_TLS[@]}"} 127.0.0.1 "$port" "${files[@]}" \
      >"$work/ref.log" 2>&1 || { echo "dicom_route reference failed"; tail -3 "$work/ref.log"; exit 1; }
    wait_files "$work/ref-$size-$mode" "$n" 600
    t1=$(now)
    kill "$spid"; wait "$spid" 2>/dev/null || true
    ref=$($PY -c "print(round($n / ($t1 - $t0)))")
    # hdx: a backlog, then the destination comes up
    D=$work/hdx-$size-$mode
    "$bin/hdx" init "$D" >/dev/null
    cp "$C/ca.pem" "$D/route-ca.pem"
    cp "$CERT" "$D/route.pem"
    install -m 600 "$KEY" "$D/route.key"
    dport=$(free_port)
    if [ "$mode" = tls ]; then
      to="to = dicoms://127.0.0.1:$dport/PACS
ca = route-ca.pem
cert = route.pem
key = route.key"
    else
      to="to = dicom://127.0.0.1:$dport/PACS"
    fi
    printf '\n[routes]\nplaintext_allow = 127.0.0.1\n[route pacs]\nkind = dicom\n%s\nbackoff_ms = 10\nbackoff_max_ms = 50\nconnect_timeout_ms = 1000\n' \
      "$to" >>"$D/hdx.conf"
    out=$("$bin/hdx" device add modality -d "$D")
    "$bin/hdx" ae add BENCH --device modality -d "$D" >/dev/null
    pport=$(free_port)
    : >"$D/hdxd.log"
    "$bin/hdxd" -c "$D/hdx.conf" -o mllp.listen=127.0.0.1:$(free_port) -o sub.listen= -o http.listen= \
      -o dicom.listen=127.0.0.1:$(free_port) -o dicom.plain_listen=127.0.0.1:$pport 2>"$D/hdxd.log" &
    hpid=$!
    for _ in $(seq 200); do grep -q event=listening "$D/hdxd.log" && break; sleep 0.05; done
    timeout 600 storescu -aet BENCH -aec HDX 127.0.0.1 "$pport" "${files[@]}" >"$work/in.log" 2>&1 ||
      { echo "dicom_route storing into hdxd failed"; tail -3 "$work/in.log"; exit 1; }
    stored=$("$bin/hdx" query -d "$D" --kind dicom --count)
    [ "$stored" = "$n" ] || { echo "dicom_route hdx stored $stored of $n"; exit 1; }
    t0=$(now)
    start_scp "$work/dst-$size-$mode" "$dport" "${tls[@]}"
    wait_files "$work/dst-$size-$mode" "$n" 600
    t1=$(now)
    kill "$hpid"; wait "$hpid" 2>/dev/null || true
    kill "$spid"; wait "$spid" 2>/dev/null || true
    hdx_rate=$($PY -c "print(round($n / ($t1 - $t0)))")
    echo "dicom_route size=$size mode=$mode n=$n bytes_each=$(stat -c %s "${files[0]}")" \
      "storescu_direct_per_s=$ref hdx_route_per_s=$hdx_rate" \
      "ratio=$($PY -c "print(round($hdx_rate / $ref, 2))")"
  done
done
