#!/usr/bin/env bash
# The HTTPS records API under load (issue 11), with its same-run ceiling. On a fresh data
# directory: hdx init, one clinician on the care team of patient API-PAT and one who is not,
# API_RECORDS HL7 messages for API-PAT (plus a tenth as many for another patient) sent with
# hdx send, hdxd with HTTPS on, both clinicians logged in (POST /auth/login, oathtool TOTP).
# Then wrk (Debian's; installed with apt-get when missing) over TLS keep-alive, one run each,
# all against the same hdxd:
#   ceil1   GET /healthz (a static 200 from the same server: the ceiling)
#   seq     GET /api/records/SEQ, SEQ spread over all of API-PAT's records (a Lua script);
#           each answer is a policy decision and an `access` audit record committed through
#           the log (reads are audited)
#   list    GET /api/records?patient=API-PAT&limit=100 (after= spread over the records)
#   deny    GET /api/records/SEQ as the clinician off the care team (404, audited all the same)
#   ceil2   GET /healthz again (the ceiling at the end: how much the machine moved)
# With API_INGEST=1, then: MLLP ingest (hdx bench, API_CONNECTIONS x 1 in flight) on the same
# hdxd alone, beside a wrk load of the list, beside a wrk load of SEQ reads, and alone again:
# what API answers on the one event loop cost ingest (msgs/s and ACK p99 against ingest alone).
# For each: requests/s, latency p50/p99 (wrk --latency), non-2xx answers, hdxd CPU in cores
# (/proc/PID/stat over the run, also per thread), wrk's CPU, the machine's busy cores (/proc/stat)
# and what is left of them for other processes (others_cores: the machine is shared) and the access audit records it added (hdx audit query); the
# ratio to the mean of the two ceilings; hdxd's event=commit_stats line at exit.
# Knobs (environment): API_BIN (build dir with hdx and hdxd; default build), API_SECONDS (10,
# per wrk run), API_THREADS (2, wrk threads), API_CONNECTIONS (64), API_RECORDS (2000),
# API_DENY (1: run the deny step), API_INGEST (0; 1: the ingest steps above), API_PERF (a directory: perf record of hdxd during the step
# API_PERF_STEP, default seq, into API_PERF/STEP.perf.data, with its reports by thread and symbol,
# STEP.perf.txt, and by thread and library, STEP.perf.dso.txt; API_PERF_CG=dwarf adds call
# graphs, API_PERF_FREQ sets the rate, 1999). Prints key=value lines starting with "api ".
# Loopback only; every wrk run is bounded by timeout(1).
set -euo pipefail
cd "$(dirname "$0")/.."
bin=${API_BIN:-$PWD/build}
secs=${API_SECONDS:-10}
threads=${API_THREADS:-2}
conns=${API_CONNECTIONS:-64}
nrec=${API_RECORDS:-2000}
deny_on=${API_DENY:-1}
ingest_on=${API_INGEST:-0}
perf_dir=${API_PERF:-}
perf_step=${API_PERF_STEP:-seq}
limit=$((secs + 60))
PAT=API-PAT

if ! command -v wrk >/dev/null; then
  apt-get install -y wrk >/dev/null 2>&1 || { apt-get update >/dev/null 2>&1 && apt-get install -y wrk >/dev/null 2>&1; } || true
fi
command -v wrk >/dev/null || { echo "api: wrk is not installed and apt-get could not install it" >&2; exit 1; }
command -v oathtool >/dev/null || { echo "api: oathtool is missing (bash scripts/install-deps.sh)" >&2; exit 1; }

work=$(mktemp -d)
hpid=
cleanup() {
  if [ -n "$hpid" ]; then kill "$hpid" 2>/dev/null || true; wait "$hpid" 2>/dev/null || true; fi
  rm -rf "$work"
}
trap cleanup EXIT
free_port() { /usr/bin/python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (a == "na" || b == "na" || b + 0 == 0) print "na"; else printf "%.3f\n", a / b }'; }
cpu_ticks() { awk '{ sub(/^.*\) /, ""); split($0, f, " "); print f[12] + f[13] }' /proc/"$1"/stat; }
# child_cpu: user + system seconds of this shell's waited-for children so far (wrk's CPU is the
# difference around its run). `times` must run in this shell, not in a subshell: into $cpu_now.
child_cpu() {
  times >"$work/times"
  cpu_now=$(awk 'NR == 2 { for (i = 1; i <= 2; i++) { split($i, t, /[ms]/); s += t[1] * 60 + t[2] } print s }' "$work/times")
}
# machine_ticks: "busy total" clock ticks of all CPUs so far (/proc/stat; idle and iowait not busy)
machine_ticks() { awk '/^cpu / { t = 0; for (i = 2; i <= NF; i++) t += $i; print t - $5 - $6, t }' /proc/stat; }
# threads PID: "tid:name:ticks" per thread of PID (utime + stime), the main thread named "network"
threads() {
  local t
  for t in /proc/"$1"/task/*; do
    awk -v tid="${t##*/}" -v main="$([ "${t##*/}" = "$1" ] && echo 1)" '{ c = $0; sub(/^[^(]*\(/, "", c); sub(/\).*$/, "", c); gsub(/[ :]/, "_", c);
      sub(/^.*\) /, ""); split($0, f, " "); print tid ":" (main ? "network" : c) ":" f[12] + f[13] }' "$t/stat" 2>/dev/null || true
  done | sort
}
# thread_cores BEFORE AFTER WALL_MS: "name=cores,..." summed by thread name, those that used any CPU
thread_cores() {
  join -t: <(echo "$1" | sort) <(echo "$2" | sort) | awk -F: -v hz="$(getconf CLK_TCK)" -v w="$3" '
    { c[$2] += ($5 - $3) / hz / (w / 1000) } END { for (k in c) if (c[k] >= 0.01) printf "%s%s=%.2f", n++ ? "," : "", k, c[k]; print "" }'
}

D=$work/data
H=$bin/hdx

"$H" init "$D" >/dev/null
printf 'Tangerine-Orbit-Lantern-42\n' >"$work/pw"
declare -A SECRET TOK
for u in apiclin apiother; do
  out=$("$H" user add "$u" --role clinician -d "$D" --password-file "$work/pw" --no-qr)
  SECRET[$u]=$(sed -n 's/^totp=.*secret=\([A-Z2-7]*\)&.*/\1/p' <<<"$out")
  "$H" training set "$u" "$(date -u +%F)" -d "$D" >/dev/null
done
"$H" careteam add apiclin "$PAT" -d "$D" >/dev/null
dev=$("$H" device add api-mon -d "$D")
[ "$ingest_on" = 1 ] && "$H" device add bench -d "$D" >/dev/null
cert=$(sed -n 's/^cert=//p' <<<"$dev")
key=$(sed -n 's/^key=//p' <<<"$dev")
# ~1 KB ORU^R01 like hdx bench's, distinct control ids; every tenth for another patient
/usr/bin/python3 - "$work/msgs.hl7" "$nrec" "$PAT" <<'EOF'
import sys
path, n, pat = sys.argv[1], int(sys.argv[2]), sys.argv[3]
pad = "x" * 700
with open(path, "w", newline="") as f:
    for i in range(n + n // 10):
        p = pat if i % 11 != 10 else "API-OTHER"
        f.write("MSH|^~\\&|MON|WARD1|HDX|HOSP|20261202120000||ORU^R01|API-%06d|P|2.5.1\r"
                "PID|1||%s^^^HOSP^MR||TEST^PATIENT\rOBR|1|||8867-4^Heart rate^LN\r"
                "OBX|1|NM|8867-4^Heart rate^LN||72|/min|||||F\rNTE|1||%s\r" % (i, p, pad))
EOF

mport=$(free_port) sport=$(free_port) hport=$(free_port)
"$bin/hdxd" -c "$D/hdx.conf" -o mllp.listen=127.0.0.1:$mport -o sub.listen=127.0.0.1:$sport \
  -o http.listen=127.0.0.1:$hport -o dicom.listen= 2>"$work/hdxd.log" &
hpid=$!
for _ in $(seq 200); do grep -q event=listening "$work/hdxd.log" 2>/dev/null && break; kill -0 "$hpid" || break; sleep 0.05; done
grep -q event=listening "$work/hdxd.log" || { cat "$work/hdxd.log"; exit 1; }
"$H" send -d "$D" --cert "$cert" --key "$key" --to 127.0.0.1:$mport --no-receipts "$work/msgs.hl7" >"$work/send.out"
echo "api: sent $(grep -c '^AA ' "$work/send.out") messages ($(grep -vc '^AA ' "$work/send.out" || true) not AA)"
"$H" query -d "$D" --headers --patient "$PAT" | sed -n 's/^# seq=\([0-9]*\) .*/\1/p' >"$work/seqs"
"$H" query -d "$D" --headers --patient API-OTHER | sed -n 's/^# seq=\([0-9]*\) .*/\1/p' >"$work/seqs.other"
echo "api: $(wc -l <"$work/seqs") records of $PAT, $(wc -l <"$work/seqs.other") of another patient"

url=https://127.0.0.1:$hport
for u in apiclin apiother; do
  code=$(oathtool --totp -b "${SECRET[$u]}")
  t=$(curl -sS --max-time 20 --cacert "$D/ca.pem" -H 'Content-Type: application/json' -o "$work/login.json" \
    -w '%{time_total}' --data-binary "{\"username\":\"$u\",\"password\":\"$(head -1 "$work/pw")\",\"totp\":\"$code\"}" \
    "https://localhost:$hport/auth/login")
  # one login end to end: TLS handshake, Argon2id (3 passes, 64 MiB) on hdx-auth, the TOTP step committed
  echo "api login user=$u ms=$(awk -v t="$t" 'BEGIN { printf "%.1f", t * 1000 }')"
  TOK[$u]=$(/usr/bin/python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["token"])' "$work/login.json")
done
# a sanity check of each route before the load
for c in "apiclin /api/records/$(head -1 "$work/seqs") 200" "apiother /api/records/$(head -1 "$work/seqs") 404" \
  "apiclin /api/records?patient=$PAT&limit=100 200"; do
  set -- $c
  got=$(curl -sS --max-time 20 --cacert "$D/ca.pem" -H "Authorization: Bearer ${TOK[$1]}" -o /dev/null -w '%{http_code}' "https://localhost:$hport$2")
  [ "$got" = "$3" ] || { echo "api: $1 GET $2 gave $got, not $3" >&2; exit 1; }
done

# Lua: each wrk thread walks the seqs from its own offset
{
  echo "local seqs = {$(paste -sd, "$work/seqs")}"
  cat <<'EOF'
local n, i = 0, 0
local mode = "seq"
function setup(thread) thread:set("id", n); n = n + 1 end
function init(args)
  mode = args[1] or "seq"
  i = ((id or 0) * 7919) % #seqs
end
function request()
  i = i % #seqs + 1
  if mode == "list" then
    return wrk.format(nil, "/api/records?patient=API-PAT&limit=100&after=" .. (seqs[i] - 1))
  end
  return wrk.format(nil, "/api/records/" .. seqs[i])
end
EOF
} >"$work/api.lua"

audit_n() { "$H" audit query -d "$D" --event access | grep -c '^seq=' || true; }
# wrk_run NAME TOKEN PATH|- [lua args]: one wrk run; its key=value line in $work/NAME.kv
wrk_run() {
  local name=$1 tok=$2 path=$3 a0 a1 t0 t1 c0 c1 w0 w1 m0 m1 hz args=()
  hz=$(getconf CLK_TCK)
  shift 3
  if [ "$path" = - ]; then args=(-s "$work/api.lua" "$url/" -- "$@"); else args=("$url$path"); fi
  a0=$(audit_n)
  echo "api: $name [loadavg $(cut -d' ' -f1-3 /proc/loadavg)]"
  local th0 th1 ppid=
  th0=$(threads "$hpid")
  if [ -n "$perf_dir" ] && [ "$name" = "$perf_step" ]; then
    mkdir -p "$perf_dir"
    perf record -q -F "${API_PERF_FREQ:-1999}" ${API_PERF_CG:+--call-graph "$API_PERF_CG"} -p "$hpid" -o "$perf_dir/$name.perf.data" -- sleep "$((secs - 1))" >/dev/null 2>&1 &
    ppid=$!
  fi
  child_cpu
  w0=$cpu_now
  m0=$(machine_ticks)
  c0=$(cpu_ticks "$hpid") t0=$(date +%s%N)
  timeout "$limit" wrk -t"$threads" -c"$conns" -d"${secs}s" --timeout 5s --latency \
    ${tok:+-H "Authorization: Bearer $tok"} "${args[@]}" >"$work/$name.wrk" 2>&1 || echo "!! wrk $name exited $?"
  c1=$(cpu_ticks "$hpid") t1=$(date +%s%N)
  child_cpu
  w1=$cpu_now
  m1=$(machine_ticks)
  th1=$(threads "$hpid")
  if [ -n "$ppid" ]; then
    wait "$ppid" || true
    perf report -i "$perf_dir/$name.perf.data" --no-children --sort comm,dso,sym --percent-limit 0.4 --stdio 2>/dev/null >"$perf_dir/$name.perf.txt" || true
    perf report -i "$perf_dir/$name.perf.data" --no-children --sort comm,dso --stdio 2>/dev/null >"$perf_dir/$name.perf.dso.txt" || true
  fi
  sed 's/^/  /' "$work/$name.wrk"
  sleep 1.5 # the last answers' audit records are committed after the answers
  a1=$(audit_n)
  awk -v n="$name" -v cpu="$(awk -v a="$c0" -v b="$c1" -v hz="$hz" -v w="$(((t1 - t0) / 1000000))" 'BEGIN { printf "%.2f", (b - a) / hz / (w / 1000) }')" \
    -v wcpu="$(awk -v a="$w0" -v b="$w1" 'BEGIN { print b - a }')" -v wall=$(((t1 - t0) / 1000000)) -v mb="$(echo "$m0 $m1" | awk -v n="$(nproc)" '{ print ($4 > $2) ? ($3 - $1) / ($4 - $2) * n : 0 }')" -v aud=$((a1 - a0)) -v th="$(thread_cores "$th0" "$th1" $(((t1 - t0) / 1000000)))" '
    function ms(v) { if (v ~ /us$/) return v / 1000; if (v ~ /ms$/) return v + 0; if (v ~ /m$/) return v * 60000; if (v ~ /s$/) return v * 1000; return v }
    /^ +50%/ { p50 = ms($2) } /^ +99%/ { p99 = ms($2) }
    /requests in/ { req = $1 } /^Requests\/sec:/ { rps = $2 }
    /Non-2xx or 3xx responses:/ { non2 = $5 } /Socket errors:/ { sockerr = $0; gsub(/ *Socket errors: */, "", sockerr); gsub(/, /, ",", sockerr); gsub(/ /, "=", sockerr) }
    END { printf "api %s requests_per_s=%s requests=%s p50_ms=%.3f p99_ms=%.3f non_2xx=%s socket_errors=%s hdxd_cores=%s wrk_cores=%.2f hdxd_us_per_req=%.1f wrk_us_per_req=%.1f machine_busy_cores=%.2f others_cores=%.2f access_audit_records=%s threads=%s\n",
      n, rps, req, p50, p99, non2 == "" ? 0 : non2, sockerr == "" ? "none" : sockerr, cpu, wcpu / (wall / 1000),
      (rps > 0 ? cpu * 1e6 / rps : 0), (rps > 0 ? wcpu / (wall / 1000) * 1e6 / rps : 0), mb, mb - cpu - wcpu / (wall / 1000), aud, th }' "$work/$name.wrk" | tee "$work/$name.kv"
}
kvget() { grep -o " $2=[^ ]*" "$work/$1.kv" | cut -d= -f2; }

echo "api: wrk $(wrk --version 2>&1 | head -1 | awk '{print $2}'), $threads threads, $conns connections, ${secs} s each, TLS keep-alive; $(nproc) cores; loadavg_start=$(cut -d' ' -f1 /proc/loadavg)"
wrk_run ceil1 "" /healthz
wrk_run seq "${TOK[apiclin]}" - seq
wrk_run list "${TOK[apiclin]}" - list
[ "$deny_on" = 1 ] && wrk_run deny "${TOK[apiother]}" - seq
wrk_run ceil2 "" /healthz
# ingest_run NAME [seq|list]: hdx bench against this hdxd, alone or beside a wrk load
ingest_run() {
  local name=$1 mode=${2:-} wpid=
  if [ -n "$mode" ]; then
    timeout "$limit" wrk -t"$threads" -c"$conns" -d"$((secs + 6))s" --timeout 5s --latency -H "Authorization: Bearer ${TOK[apiclin]}" \
      -s "$work/api.lua" "$url/" -- "$mode" >"$work/$name.wrk" 2>&1 &
    wpid=$!
    sleep 1
  fi
  echo "api: $name [loadavg $(cut -d' ' -f1-3 /proc/loadavg)]"
  timeout "$limit" "$H" bench -d "$D" --to 127.0.0.1:$mport --connections "$conns" --seconds "$secs" --inflight 1 >"$work/$name.out" 2>&1 || echo "!! bench $name exited $?"
  [ -n "$wpid" ] && { wait "$wpid" || true; }
  local line
  line=$(grep 'msgs_per_s=' "$work/$name.out" | tail -1)
  echo "api ingest $name msgs_per_s=$(grep -o 'msgs_per_s=[^ ]*' <<<"$line" | cut -d= -f2) p50_ms=$(grep -o 'p50_ms=[^ ]*' <<<"$line" | cut -d= -f2) p99_ms=$(grep -o 'p99_ms=[^ ]*' <<<"$line" | cut -d= -f2)${mode:+ beside_wrk_$mode=$(awk '/^Requests\/sec:/ { print $2 }' "$work/$name.wrk")}" | tee "$work/$name.kv"
}
if [ "$ingest_on" = 1 ]; then
  ingest_run ingest_alone1
  ingest_run ingest_list list
  ingest_run ingest_seq seq
  ingest_run ingest_alone2
  alone=$(awk -v a="$(kvget ingest_alone1 msgs_per_s)" -v b="$(kvget ingest_alone2 msgs_per_s)" 'BEGIN { printf "%.0f", (a + b) / 2 }')
  for s in list seq; do
    echo "api ingest_ratio_beside_${s}=$(ratio "$(kvget ingest_$s msgs_per_s)" "$alone") ingest_beside_${s}_per_s=$(kvget ingest_$s msgs_per_s) ingest_alone_mean_per_s=$alone p99_ms_beside_${s}=$(kvget ingest_$s p99_ms) p99_ms_alone=$(kvget ingest_alone1 p99_ms)/$(kvget ingest_alone2 p99_ms)"
  done
fi
ceil=$(awk -v a="$(kvget ceil1 requests_per_s)" -v b="$(kvget ceil2 requests_per_s)" 'BEGIN { printf "%.0f", (a + b) / 2 }')
kill "$hpid"
wait "$hpid" 2>/dev/null || true
hpid=
grep -o 'event=commit_stats.*' "$work/hdxd.log" | tail -1 | sed 's/^/api commit_stats: /' || echo "api commit_stats: none logged"
echo "api ceiling_mean_per_s=$ceil ceiling_start_per_s=$(kvget ceil1 requests_per_s) ceiling_end_per_s=$(kvget ceil2 requests_per_s) loadavg_end=$(cut -d' ' -f1 /proc/loadavg)"
for s in seq list $([ "$deny_on" = 1 ] && echo deny); do
  echo "api ratio_${s}_over_ceiling=$(ratio "$(kvget "$s" requests_per_s)" "$ceil") ${s}_per_s=$(kvget "$s" requests_per_s) ceiling_per_s=$ceil"
done
echo "api target seq_per_s>=20000: $(awk -v r="$(kvget seq requests_per_s)" 'BEGIN { print (r + 0 >= 20000) ? "met" : "missed" }')"
