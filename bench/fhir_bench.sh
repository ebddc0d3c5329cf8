#!/usr/bin/env bash
# FHIR R4 at /fhir under load (issue 13), each figure beside its same-run ceiling. On a fresh
# data directory: hdx init, an integration API key (`hdx user add feed --role integration
# --api-key`, used as `Authorization: Bearer KEY`), FHIR_DEVICES devices for the HL7 v2 load,
# hdxd with HTTPS on. Then wrk (Debian's; installed with apt-get when missing) over TLS
# keep-alive against the same hdxd, one run each:
#   ceil1   GET /fhir/metadata (the CapabilityStatement: a static answer, no auth: the ceiling)
#   create  POST /fhir/Observation (application/fhir+json), a vital-sign heart rate for one of
#           FHIR_PATIENTS Patients created first (a Lua script picks them in turn); each 201 is
#           durable and indexed, and is also stored as an ORU^R01 (docs/FHIR.md); then
#           Observation?patient=Patient/ID&_summary=count for every one of those Patients,
#           summed, against wrk's 2xx count (no lost acks: stored >= acknowledged; up to one
#           request per connection more may be stored, those in flight when wrk stopped)
#   read    GET /fhir/Observation/ID over FHIR_READ_IDS ids of the created Observations (a
#           Lua script walks the id file, each thread from its own offset)
#   load    FHIR_LOAD Observations (default 1,000,000) as HL7 v2: FHIR_LOAD/5 ORU^R01 in the
#           shape hdx sim sends (PID-3 an MRN, six vital OBX: heart rate, SpO2, systolic and
#           diastolic pressure (one panel), respiratory rate, temperature = 5 Observations),
#           for FHIR_LOAD_PATIENTS Patients (a FHIR Patient created for each MRN first), sent
#           with FHIR_DEVICES `hdx send` at once; then one FHIR create, answered only once
#           indexed: the indexer follows the log in order, so its 201 means the load is
#           searchable. Reports the send time and the time to that 201 (load + index)
#   search  GET /fhir/Observation?patient=Patient/ID&code=http://loinc.org|8867-4&_count=10,
#           ID over the load's Patients, FHIR_SEARCH_CONNECTIONS connections (throughput) and
#   search1 the same with one connection and one thread (the latency of one search alone)
#   (first) the disk: bench/diskflush.c in the data directory, one fdatasync at a time
#   ceil2   GET /fhir/metadata again (how much the machine moved); ratios divide by the mean
# For each: requests/s, p50/p99 (wrk --latency), non-2xx, hdxd CPU in cores (also per thread),
# wrk's CPU, the machine's busy cores and what other processes used of them.
# Knobs (environment): FHIR_BIN (build dir; default build), FHIR_SECONDS (10, per wrk run),
# FHIR_THREADS (2), FHIR_CONNECTIONS (64), FHIR_PATIENTS (100, the create step's Patients:
# keep FHIR_SECONDS x rate / FHIR_PATIENTS under 10,000, the rows a search counts before it
# leaves `total` out), FHIR_READ_IDS (10000), FHIR_LOAD (1000000; 0 skips load and search;
# e.g. 50000 for a quick run), FHIR_LOAD_PATIENTS (1000), FHIR_DEVICES (16: parallel `hdx send` streams of the load),
# FHIR_SEARCH_CONNECTIONS (8: the search step's connections; a search over 1M rows takes tens
# of ms, and 64 queued on the one network thread would pass wrk's 5 s timeout), FHIR_PERF (a
# directory: `perf record -g` of hdxd during the steps FHIR_PERF_STEPS (default "create read
# search"), into FHIR_PERF/STEP.perf.data with STEP.sym.txt (`perf report --no-children
# --sort symbol`) and STEP.comm.txt (by thread and symbol)), FHIR_PERF_FREQ (999),
# FHIR_PERF_CG (fp; dwarf for call graphs through hdxd, which has no frame pointers: then
# `perf report --children -i STEP.perf.data` gives inclusive shares per function).
# Prints key=value lines starting with "fhir ". Loopback only; every wrk run bounded by timeout.
set -euo pipefail
cd "$(dirname "$0")/.."
bin=${FHIR_BIN:-$PWD/build}
secs=${FHIR_SECONDS:-10}
threads=${FHIR_THREADS:-2}
conns=${FHIR_CONNECTIONS:-64}
npat=${FHIR_PATIENTS:-100}
nids=${FHIR_READ_IDS:-10000}
nload=${FHIR_LOAD:-1000000}
nlpat=${FHIR_LOAD_PATIENTS:-1000}
ndev=${FHIR_DEVICES:-16}
sconns=${FHIR_SEARCH_CONNECTIONS:-8}
perf_dir=${FHIR_PERF:-}
perf_steps=" ${FHIR_PERF_STEPS:-create read search} "
limit=$((secs + 60))

if ! command -v wrk >/dev/null; then
  apt-get install -y wrk >/dev/null 2>&1 || { apt-get update >/dev/null 2>&1 && apt-get install -y wrk >/dev/null 2>&1; } || true
fi
command -v wrk >/dev/null || { echo "fhir: wrk is not installed and apt-get could not install it" >&2; exit 1; }
if [ -n "$perf_dir" ] && ! command -v perf >/dev/null; then
  apt-get install -y linux-perf >/dev/null 2>&1 || { echo "fhir: perf is missing (apt-get install -y linux-perf)" >&2; exit 1; }
fi

work=$(mktemp -d)
hpid=
cleanup() {
  if [ -n "$hpid" ]; then kill "$hpid" 2>/dev/null || true; wait "$hpid" 2>/dev/null || true; fi
  rm -rf "$work"
}
trap cleanup EXIT
free_port() { /usr/bin/python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (a == "" || b == "" || b + 0 == 0) print "na"; else printf "%.3f\n", a / b }'; }
cpu_ticks() { awk '{ sub(/^.*\) /, ""); split($0, f, " "); print f[12] + f[13] }' /proc/"$1"/stat; }
child_cpu() {
  times >"$work/times"
  cpu_now=$(awk 'NR == 2 { for (i = 1; i <= 2; i++) { split($i, t, /[ms]/); s += t[1] * 60 + t[2] } print s }' "$work/times")
}
machine_ticks() { awk '/^cpu / { t = 0; for (i = 2; i <= NF; i++) t += $i; print t - $5 - $6, t }' /proc/stat; }
threads() {
  local t
  for t in /proc/"$1"/task/*; do
    awk -v tid="${t##*/}" -v main="$([ "${t##*/}" = "$1" ] && echo 1)" '{ c = $0; sub(/^[^(]*\(/, "", c); sub(/\).*$/, "", c); gsub(/[ :]/, "_", c);
      sub(/^.*\) /, ""); split($0, f, " "); print tid ":" (main ? "network" : c) ":" f[12] + f[13] }' "$t/stat" 2>/dev/null || true
  done | sort
}
thread_cores() {
  join -t: <(echo "$1" | sort) <(echo "$2" | sort) | awk -F: -v hz="$(getconf CLK_TCK)" -v w="$3" '
    { c[$2] += ($5 - $3) / hz / (w / 1000) } END { for (k in c) if (c[k] >= 0.01) printf "%s%s=%.2f", n++ ? "," : "", k, c[k]; print "" }'
}
now_ms() { echo $(($(date +%s%N) / 1000000)); }

D=$work/data
H=$bin/hdx
"$H" init "$D" >/dev/null
# The disk's limit in the same run, in the data directory: one 1.1 KB append and one fdatasync
# at a time (bench/diskflush.c, a -DHDX_BENCH=ON target). A durable create needs at least one.
if [ ! -x "$bin/diskflush" ]; then
  cmake -S . -B "$bin" -DHDX_BENCH=ON >/dev/null && cmake --build "$bin" --target diskflush >/dev/null
fi
"$bin/diskflush" "$D" 1 64 >"$work/disk.out"
disk_line=$(grep 'batch=1 ' "$work/disk.out")
disk_fps=$(sed -n 's/.*fdatasync_per_s=\([0-9.]*\).*/\1/p' <<<"$disk_line")
echo "fhir disk ${disk_line#diskflush }"
out=$("$H" user add feed --role integration --api-key -d "$D")
KEY=$(sed -n 's/^api_key=//p' <<<"$out")
[ -n "$KEY" ] || { echo "fhir: no api_key from hdx user add" >&2; exit 1; }
for i in $(seq "$ndev"); do
  dev=$("$H" device add "fb-mon-$i" -d "$D")
  echo "$(sed -n 's/^cert=//p' <<<"$dev") $(sed -n 's/^key=//p' <<<"$dev")" >>"$work/devices"
done

mport=$(free_port) sport=$(free_port) hport=$(free_port)
"$bin/hdxd" -c "$D/hdx.conf" -o mllp.listen=127.0.0.1:$mport -o sub.listen=127.0.0.1:$sport \
  -o http.listen=127.0.0.1:$hport -o dicom.listen= 2>"$work/hdxd.log" &
hpid=$!
for _ in $(seq 200); do grep -q event=listening "$work/hdxd.log" 2>/dev/null && break; kill -0 "$hpid" || break; sleep 0.05; done
grep -q event=listening "$work/hdxd.log" || { cat "$work/hdxd.log"; exit 1; }
url=https://127.0.0.1:$hport

# fhirc.py: a keep-alive client for the set-up and the checks (Python's http.client over TLS)
cat >"$work/fhirc.py" <<'EOF'
import http.client, json, ssl, sys, time, urllib.parse
port, ca, key, cmd = int(sys.argv[1]), sys.argv[2], sys.argv[3], sys.argv[4]
ctx = ssl.create_default_context(cafile=ca)
conn = http.client.HTTPSConnection("localhost", port, context=ctx, timeout=120)
H = {"Authorization": "Bearer " + key, "Content-Type": "application/fhir+json"}
def req(method, path, body=None):
    conn.request(method, "/fhir" + path, body=json.dumps(body) if body is not None else None, headers=H)
    r = conn.getresponse()
    return r.status, json.loads(r.read() or b"null")
def patient(mrn):
    return {"resourceType": "Patient", "identifier": [{"system": "urn:oid:2.16.840.1.113883.3.1", "value": mrn}],
            "name": [{"family": "Bench", "given": [mrn]}], "birthDate": "1970-01-01"}
def hr(pid):
    return {"resourceType": "Observation", "status": "final",
            "category": [{"coding": [{"system": "http://terminology.hl7.org/CodeSystem/observation-category", "code": "vital-signs"}]}],
            "code": {"coding": [{"system": "http://loinc.org", "code": "8867-4", "display": "Heart rate"}]},
            "subject": {"reference": "Patient/" + pid}, "effectiveDateTime": "2026-12-02T12:00:00Z",
            "valueQuantity": {"value": 72, "unit": "/min", "system": "http://unitsofmeasure.org", "code": "/min"}}
def count(pid, code=None):
    q = "/Observation?patient=Patient/" + pid + "&_summary=count"
    if code: q += "&code=" + urllib.parse.quote(code, safe="")
    st, b = req("GET", q)
    if st != 200: sys.exit("search gave %d" % st)
    return b.get("total", "incomplete")
if cmd == "patients":           # PREFIX N -> one Patient id per line, MRN PREFIX-NNNNN
    prefix, n = sys.argv[5], int(sys.argv[6])
    for i in range(n):
        st, b = req("POST", "/Patient", patient("%s-%05d" % (prefix, i)))
        if st != 201: sys.exit("create Patient gave %d" % st)
        print(b["id"])
elif cmd == "probe":            # PID: one vital-sign create, its wall time in ms
    t = time.time(); st, b = req("POST", "/Observation", hr(sys.argv[5]))
    if st != 201: sys.exit("create Observation gave %d" % st)
    print("%.1f %s" % ((time.time() - t) * 1000, b["id"]))
elif cmd == "count":            # IDFILE [CODE]: the sum of the Patients' counts
    tot, inc = 0, 0
    for pid in open(sys.argv[5]).read().split():
        c = count(pid, sys.argv[6] if len(sys.argv) > 6 else None)
        if c == "incomplete": inc += 1
        else: tot += c
    print(tot, inc)
elif cmd == "ids":              # IDFILE N: up to N Observation ids of those Patients
    n, ids = int(sys.argv[6]), []
    for pid in open(sys.argv[5]).read().split():
        off = 0
        while len(ids) < n:
            st, b = req("GET", "/Observation?patient=Patient/%s&_count=1000&_offset=%d" % (pid, off))
            got = [e["resource"]["id"] for e in b.get("entry", [])]
            ids += got
            off += 1000
            if len(got) < 1000: break
        if len(ids) >= n: break
    print("\n".join(ids[:n]))
elif cmd == "check":            # PATH STATUS: one GET must answer STATUS
    conn.request("GET", sys.argv[5], headers={"Authorization": "Bearer " + key})
    r = conn.getresponse(); r.read()
    if r.status != int(sys.argv[6]): sys.exit("GET %s gave %d" % (sys.argv[5], r.status))
EOF
fc() { /usr/bin/python3 "$work/fhirc.py" "$hport" "$D/ca.pem" "$KEY" "$@"; }

fc patients FBC "$npat" >"$work/pids.create"
echo "fhir: $(wc -l <"$work/pids.create") Patients for the create step"

# Lua: the create body (a vital-sign heart rate, ~520 bytes), reads by id, searches by patient
{
  echo "local pids = {$(sed 's/.*/"&"/' "$work/pids.create" | paste -sd,)}"
  cat <<'EOF'
local n, i = 0, 0
function setup(thread) thread:set("id", n); n = n + 1 end
function init(args) i = ((id or 0) * 7919) % #pids end
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/fhir+json"
local pre = '{"resourceType":"Observation","status":"final","category":[{"coding":[{"system":"http://terminology.hl7.org/CodeSystem/observation-category","code":"vital-signs"}]}],"code":{"coding":[{"system":"http://loinc.org","code":"8867-4","display":"Heart rate"}]},"subject":{"reference":"Patient/'
function request()
  i = i % #pids + 1
  local v = 50 + (i * 37) % 80
  return wrk.format("POST", "/fhir/Observation", nil, pre .. pids[i] ..
    '"},"effectiveDateTime":"2026-12-02T12:00:00Z","valueQuantity":{"value":' .. v ..
    ',"unit":"/min","system":"http://unitsofmeasure.org","code":"/min"}}')
end
EOF
} >"$work/create.lua"
# list.lua FILE PREFIX SUFFIX: GET PREFIX..line..SUFFIX over the lines of FILE
mklua() {
  {
    echo "local ids = {$(sed 's/.*/"&"/' "$1" | paste -sd,)}"
    echo "local pre, suf = \"$2\", \"$3\""
    cat <<'EOF'
local n, i = 0, 0
function setup(thread) thread:set("id", n); n = n + 1 end
function init(args) i = ((id or 0) * 7919) % #ids end
function request()
  i = i % #ids + 1
  return wrk.format(nil, pre .. ids[i] .. suf)
end
EOF
  } >"$4"
}

wrk_run() { # NAME CONNS THREADS PATH|LUA: one wrk run; its key=value line in $work/NAME.kv
  local name=$1 c=$2 t=$3 target=$4 t0 t1 c0 c1 w0 w1 m0 m1 hz args=() th0 th1 ppid=
  hz=$(getconf CLK_TCK)
  if [ "${target%.lua}" != "$target" ]; then args=(-s "$target" "$url/"); else args=("$url$target"); fi
  echo "fhir: $name [loadavg $(cut -d' ' -f1-3 /proc/loadavg)]"
  th0=$(threads "$hpid")
  if [ -n "$perf_dir" ] && [ "${perf_steps/ $name /}" != "$perf_steps" ]; then
    mkdir -p "$perf_dir"
    perf record -q --call-graph "${FHIR_PERF_CG:-fp}" -F "${FHIR_PERF_FREQ:-999}" -p "$hpid" -o "$perf_dir/$name.perf.data" -- sleep "$((secs - 1))" >/dev/null 2>&1 &
    ppid=$!
  fi
  child_cpu; w0=$cpu_now
  m0=$(machine_ticks)
  c0=$(cpu_ticks "$hpid") t0=$(date +%s%N)
  timeout "$limit" wrk -t"$t" -c"$c" -d"${secs}s" --timeout 5s --latency \
    ${5:+-H "Authorization: Bearer $KEY"} "${args[@]}" >"$work/$name.wrk" 2>&1 || echo "!! wrk $name exited $?"
  c1=$(cpu_ticks "$hpid") t1=$(date +%s%N)
  child_cpu; w1=$cpu_now
  m1=$(machine_ticks)
  th1=$(threads "$hpid")
  if [ -n "$ppid" ]; then
    wait "$ppid" || true
    perf report -i "$perf_dir/$name.perf.data" --no-children --sort symbol --stdio 2>/dev/null | grep -v '^$' | head -60 >"$perf_dir/$name.sym.txt" || true
    perf report -i "$perf_dir/$name.perf.data" --no-children --sort comm,dso,sym -g none --percent-limit 0.5 --stdio 2>/dev/null >"$perf_dir/$name.comm.txt" || true
  fi
  sed 's/^/  /' "$work/$name.wrk"
  local wall=$(((t1 - t0) / 1000000))
  awk -v n="$name" -v cpu="$(awk -v a="$c0" -v b="$c1" -v hz="$hz" -v w="$wall" 'BEGIN { printf "%.2f", (b - a) / hz / (w / 1000) }')" \
    -v wcpu="$(awk -v a="$w0" -v b="$w1" 'BEGIN { print b - a }')" -v wall="$wall" -v conns="$c" \
    -v mb="$(echo "$m0 $m1" | awk -v n="$(nproc)" '{ print ($4 > $2) ? ($3 - $1) / ($4 - $2) * n : 0 }')" \
    -v th="$(thread_cores "$th0" "$th1" "$wall")" '
    function ms(v) { if (v ~ /us$/) return v / 1000; if (v ~ /ms$/) return v + 0; if (v ~ /m$/) return v * 60000; if (v ~ /s$/) return v * 1000; return v }
    /^ +50%/ { p50 = ms($2) } /^ +90%/ { p90 = ms($2) } /^ +99%/ { p99 = ms($2) }
    /requests in/ { req = $1 } /^Requests\/sec:/ { rps = $2 }
    /Non-2xx or 3xx responses:/ { non2 = $5 } /Socket errors:/ { sockerr = $0; gsub(/ *Socket errors: */, "", sockerr); gsub(/, /, ",", sockerr); gsub(/ /, "=", sockerr) }
    END { non2 = non2 == "" ? 0 : non2
      printf "fhir %s requests_per_s=%s requests=%s ok_2xx=%d p50_ms=%.3f p90_ms=%.3f p99_ms=%.3f non_2xx=%s socket_errors=%s connections=%s hdxd_cores=%s wrk_cores=%.2f hdxd_us_per_req=%.1f wrk_us_per_req=%.1f machine_busy_cores=%.2f others_cores=%.2f threads=%s\n",
      n, rps, req, req - non2, p50, p90, p99, non2, sockerr == "" ? "none" : sockerr, conns, cpu, wcpu / (wall / 1000),
      (rps > 0 ? cpu * 1e6 / rps : 0), (rps > 0 ? wcpu / (wall / 1000) * 1e6 / rps : 0), mb, mb - cpu - wcpu / (wall / 1000), th }' "$work/$name.wrk" | tee "$work/$name.kv"
}
kvget() { grep -o " $2=[^ ]*" "$work/$1.kv" | cut -d= -f2; }

echo "fhir: wrk $(wrk --version 2>&1 | head -1 | awk '{print $2}'), $threads threads, $conns connections, ${secs} s each, TLS keep-alive; nproc $(nproc); $(awk '/MemTotal/ { printf "%.0f GiB", $2 / 1048576 }' /proc/meminfo); $(uname -sr); loadavg_start=$(cut -d' ' -f1 /proc/loadavg)"
curl -sS --max-time 20 --cacert "$D/ca.pem" -o /dev/null -w '%{http_code} %{size_download}\n' "https://localhost:$hport/fhir/metadata" | { read -r code size; [ "$code" = 200 ] || { echo "fhir: /fhir/metadata gave $code" >&2; exit 1; }; echo "fhir: /fhir/metadata is $size bytes"; }

wrk_run ceil1 "$conns" "$threads" /fhir/metadata
wrk_run create "$conns" "$threads" "$work/create.lua" auth
sleep 1 # the answers wrk did not wait for
read -r stored incomplete < <(fc count "$work/pids.create")
created=$(kvget create ok_2xx)
echo "fhir create_check acknowledged_201=$created stored_by_search=$stored extra_in_flight=$((stored - created)) incomplete_counts=$incomplete lost_acks=$([ "$incomplete" = 0 ] && { [ "$stored" -ge "$created" ] && [ $((stored - created)) -le "$conns" ] && echo 0 || echo "MISMATCH"; } || echo unknown)" | tee "$work/create_check.kv"

fc ids "$work/pids.create" "$nids" >"$work/obs.ids"
echo "fhir: $(wc -l <"$work/obs.ids") Observation ids for the read step"
fc check "/fhir/Observation/$(head -1 "$work/obs.ids")" 200
mklua "$work/obs.ids" /fhir/Observation/ "" "$work/read.lua"
wrk_run read "$conns" "$threads" "$work/read.lua" auth

if [ "$nload" -gt 0 ]; then
  nmsg=$((nload / 5))
  fc patients FBL "$nlpat" >"$work/pids.load"
  echo "fhir: $(wc -l <"$work/pids.load") Patients for the load; $nmsg ORU^R01 in $ndev files"
  # the messages, in hdx sim's shape (src/cli/sim.c sim_oru_build), patient i % N, split in ndev files
  /usr/bin/python3 - "$work/load" "$nmsg" "$nlpat" "$ndev" <<'EOF'
import sys
base, n, npat, ndev = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
fs = [open("%s.%d.hl7" % (base, d), "w", newline="") for d in range(ndev)]
for i in range(n):
    p = i % npat
    s = i // npat
    hh, mm, ss = (s // 3600) % 24, (s // 60) % 60, s % 60
    ts = "20261202%02d%02d%02d+0000" % (hh, mm, ss)
    dev = "fb-mon-%d" % (i % ndev + 1)
    obx = [("8867-4", "Heart rate", 60 + i % 40, "/min", "60-100"), ("59408-5", "SaO2 % BldA PulseOx", 95 + i % 5, "%", "95-100"),
           ("8480-6", "BP sys", 110 + i % 30, "mm[Hg]", "90-140"), ("8462-4", "BP dias", 70 + i % 15, "mm[Hg]", "60-90"),
           ("9279-1", "Resp rate", 12 + i % 8, "/min", "12-20"), ("8310-5", "Body temperature", "36.%d" % (i % 10), "Cel", "36.1-37.8")]
    m = ("MSH|^~\\&|%s|HDXSIM|HDX|HOSPITAL|%s||ORU^R01^ORU_R01|FB-%08d|P|2.5.1||||||UNICODE UTF-8|||IHE_PCD_001^IHE PCD^1.3.6.1.4.1.19376.1.6.1.1.1^ISO\r"
         "PID|1||FBL-%05d^^^HDXSIM^MR||Bench^P%05d^^^^^L||19700101|F|||1 Harbour Road^^Springfield^^00001^USA|||||||V%05d\r"
         "PV1|1|I|ICU^^B%03d^HDXSIM||||4711^Okonjo^Maren^^^Dr|||MED|||||||||V%05d\r"
         "OBR|1|FB-%08d||182777000^Monitoring of patient^SCT|||%s||||||||||||||||||F\r") % (dev, ts, i, p, p, p, p % 1000, p, i, ts)
    for k, (code, name, val, unit, rng) in enumerate(obx):
        m += "OBX|%d|NM|%s^%s^LN||%s|%s^%s^UCUM|%s|N|||F|||%s||||%s\r" % (k + 1, code, name, val, unit, unit, rng, ts, dev)
    fs[i % ndev].write(m)
EOF
  echo "fhir: load [loadavg $(cut -d' ' -f1-3 /proc/loadavg)]"
  t0=$(now_ms)
  d=0
  while read -r cert key; do
    "$H" send -d "$D" --cert "$cert" --key "$key" --to 127.0.0.1:$mport --no-receipts "$work/load.$d.hl7" >"$work/send.$d.out" 2>&1 &
    echo $! >>"$work/send.pids"
    d=$((d + 1))
  done <"$work/devices"
  rc=0
  while read -r p; do wait "$p" || rc=1; done <"$work/send.pids"
  t1=$(now_ms)
  aa=$(cat "$work"/send.*.out | grep -c '^AA ' || true)
  read -r probe_ms probe_id < <(fc probe "$(head -1 "$work/pids.create")")
  t2=$(now_ms)
  echo "fhir load messages=$nmsg acked_aa=$aa send_rc=$rc observations=$((aa * 5)) send_s=$(awk -v a=$t0 -v b=$t1 'BEGIN { printf "%.1f", (b - a) / 1000 }') msgs_per_s=$(awk -v a=$t0 -v b=$t1 -v n="$aa" 'BEGIN { printf "%.0f", n / ((b - a) / 1000) }') load_and_index_s=$(awk -v a=$t0 -v b=$t2 'BEGIN { printf "%.1f", (b - a) / 1000 }') index_lag_after_send_s=$(awk -v a=$t1 -v b=$t2 'BEGIN { printf "%.1f", (b - a) / 1000 }') observations_per_s=$(awk -v a=$t0 -v b=$t2 -v n="$aa" 'BEGIN { printf "%.0f", n * 5 / ((b - a) / 1000) }')" | tee "$work/load.kv"
  per=$(fc count <(head -1 "$work/pids.load") "http://loinc.org|8867-4")
  echo "fhir load_check heart_rates_of_first_patient=${per% *} expected=$(( (nmsg + nlpat - 1) / nlpat )) fhir_db_mib=$(du -m "$D/fhir.db" | cut -f1)"
  fc check "/fhir/Observation?patient=Patient/$(head -1 "$work/pids.load")&code=http://loinc.org%7C8867-4&_count=10" 200
  mklua "$work/pids.load" "/fhir/Observation?patient=Patient/" "&code=http://loinc.org%7C8867-4&_count=10" "$work/search.lua"
  wrk_run search "$sconns" "$threads" "$work/search.lua" auth
  wrk_run search1 1 1 "$work/search.lua" auth
fi
wrk_run ceil2 "$conns" "$threads" /fhir/metadata

ceil=$(awk -v a="$(kvget ceil1 requests_per_s)" -v b="$(kvget ceil2 requests_per_s)" 'BEGIN { printf "%.0f", (a + b) / 2 }')
kill "$hpid"
wait "$hpid" 2>/dev/null || true
hpid=
grep -o 'event=commit_stats.*' "$work/hdxd.log" | tail -1 | sed 's/^/fhir commit_stats: /' || echo "fhir commit_stats: none logged"
echo "fhir ratio_create_over_fdatasync=$(ratio "$(kvget create requests_per_s)" "$disk_fps") fdatasync_per_s=$disk_fps"
echo "fhir ceiling_mean_per_s=$ceil ceiling_start_per_s=$(kvget ceil1 requests_per_s) ceiling_end_per_s=$(kvget ceil2 requests_per_s) loadavg_end=$(cut -d' ' -f1 /proc/loadavg)"
for s in create read $([ "$nload" -gt 0 ] && echo search search1); do
  echo "fhir ratio_${s}_over_ceiling=$(ratio "$(kvget "$s" requests_per_s)" "$ceil") ${s}_per_s=$(kvget "$s" requests_per_s) p50_ms=$(kvget "$s" p50_ms) p99_ms=$(kvget "$s" p99_ms) ceiling_per_s=$ceil"
done
met() { awk -v v="$1" -v t="$2" -v op="$3" 'BEGIN { print ((op == "ge" ? v + 0 >= t : v + 0 < t) ? "met" : "missed") }'; }
echo "fhir target create_per_s>=20000: $(met "$(kvget create requests_per_s)" 20000 ge)"
echo "fhir target read_per_s>=50000: $(met "$(kvget read requests_per_s)" 50000 ge)"
if [ "$nload" -gt 0 ]; then
  echo "fhir target search_p99_ms<5 (one connection): $(met "$(kvget search1 p99_ms)" 5 lt); ($sconns connections: $(met "$(kvget search p99_ms)" 5 lt))"
fi
