#!/usr/bin/env bash
# FHIR Subscriptions under load (issue 13: "subscription delivery p99 under 5 ms after commit
# with 100 websocket subscribers"). On a fresh data directory: hdx init, an integration API
# key, a FHIR Patient for the simulator's first monitor (SIM-10001), SUB_N Subscriptions
# (websocket, that patient's heart rate, id-only), one binding token each; then
# bench/fhir_sub_ws.py (python3-websockets) holds the SUB_N websockets while `hdx sim` sends
# SUB_RATE ORU^R01 a second for SUB_SECONDS over MLLP/TLS: each message's heart rate is one
# event for every subscription, so SUB_N x SUB_RATE notifications a second.
# Reported per run: events received, out of order (must be 0), the delay from the event's
# timestamp (the ORU^R01 record's time, taken when its batch is sealed, before its fsync) to
# its arrival at the client, p50/p99/max; and, in the same run over the same connections, a
# websocket ping's round trip (TLS, the network thread and the client: the floor without the
# log); hdxd's /metrics hdx_fhir_notification_latency_seconds (server side: write to send);
# and the disk's limit in the same run (bench/diskflush.c in the data directory, before the
# load: one 1.1 KB append + fdatasync, p50/p99). An event's path holds two durable commits
# (its record, then its disclosure record), so 2 x the fdatasync p50 is its disk floor, and
# the delivery p50 is also given as a ratio to it. Knobs: SUB_BIN (build), SUB_N (100), SUB_RATE (20), SUB_SECONDS (10), SUB_PERF (a
# directory: `perf record -g` of hdxd during the load into SUB_PERF/sub.perf.data).
# Prints key=value lines starting with "fhirsub ". Loopback only; bounded by timeouts.
set -euo pipefail
cd "$(dirname "$0")/.."
bin=${SUB_BIN:-$PWD/build}
n=${SUB_N:-100}
rate=${SUB_RATE:-20}
secs=${SUB_SECONDS:-10}
PY=/usr/bin/python3
if [ ! -x "$bin/diskflush" ]; then # the disk probe is a bench target (-DHDX_BENCH=ON)
  cmake -S . -B "$bin" -DHDX_BENCH=ON >/dev/null && cmake --build "$bin" --target diskflush >/dev/null
fi
work=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null; wait 2>/dev/null; rm -rf "$work"' EXIT
D=$work/data
"$bin/hdx" init "$D" >/dev/null
"$bin/diskflush" "$D" 1 64 >"$work/disk.out"
disk=$(grep 'batch=1 ' "$work/disk.out")
key=$("$bin/hdx" user add feed --role integration --api-key -d "$D" | sed -n 's/^api_key=//p')
free_port() { $PY -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
mport=$(free_port) sport=$(free_port) hport=$(free_port)
"$bin/hdxd" -c "$D/hdx.conf" -o mllp.listen=127.0.0.1:$mport -o sub.listen=127.0.0.1:$sport \
  -o http.listen=127.0.0.1:$hport -o dicom.listen= 2>"$work/hdxd.log" &
hpid=$!
for _ in $(seq 200); do grep -q event=listening "$work/hdxd.log" 2>/dev/null && break; sleep 0.05; done
grep -q event=listening "$work/hdxd.log" || { cat "$work/hdxd.log"; exit 1; }
$PY - "$hport" "$D/ca.pem" "$key" "$n" >"$work/pairs" <<'EOF'
import http.client, json, ssl, sys
port, ca, key, n = int(sys.argv[1]), sys.argv[2], sys.argv[3], int(sys.argv[4])
ctx = ssl.create_default_context(cafile=ca)
c = http.client.HTTPSConnection("localhost", port, context=ctx, timeout=60)
H = {"Authorization": "Bearer " + key, "Content-Type": "application/fhir+json"}
def req(m, p, body=None):
    c.request(m, "/fhir" + p, body=json.dumps(body) if body else None, headers=H)
    r = c.getresponse(); d = json.loads(r.read() or b"{}")
    assert r.status < 300, (r.status, d)
    return d
pid = req("POST", "/Patient", {"resourceType": "Patient", "identifier": [{"system": "urn:hdx:sim", "value": "SIM-10001"}]})["id"]
EXT = "http://hl7.org/fhir/uv/subscriptions-backport/StructureDefinition/"
for _ in range(n):
    s = req("POST", "/Subscription", {"resourceType": "Subscription", "status": "requested", "reason": "bench",
        "criteria": "urn:hdx:SubscriptionTopic:vital-signs",
        "_criteria": {"extension": [{"url": EXT + "backport-filter-criteria",
                                     "valueString": "Observation?patient=Patient/%s&code=http://loinc.org|8867-4" % pid}]},
        "channel": {"type": "websocket", "payload": "application/fhir+json"}})
    t = req("GET", "/Subscription/%s/$get-ws-binding-token" % s["id"])
    p = {x["name"]: x for x in t["parameter"]}
    print(p["websocket-url"]["valueUrl"].replace("127.0.0.1", "localhost") + "=" + p["token"]["valueString"])
EOF
$PY bench/fhir_sub_ws.py "$D/ca.pem" "$work/ws.json" $((secs + 3)) $(cat "$work/pairs") >"$work/ws.out" &
wpid=$!
for _ in $(seq 300); do grep -q bound "$work/ws.out" 2>/dev/null && break; sleep 0.1; done
grep -q bound "$work/ws.out" || { echo "fhirsub error=websockets_not_bound"; exit 1; }
cpu0=$(awk '{print $14+$15}' /proc/$hpid/stat)
if [ -n "${SUB_PERF:-}" ]; then
  mkdir -p "$SUB_PERF"
  perf record -F 999 -g -p "$hpid" -o "$SUB_PERF/sub.perf.data" -- sleep "$secs" >/dev/null 2>&1 &
fi
timeout $((secs + 30)) "$bin/hdx" sim -d "$D" --monitors 1 --rate "$rate" --seconds "$secs" \
  --to "127.0.0.1:$mport" --quiet >"$work/sim.out" 2>&1
cpu1=$(awk '{print $14+$15}' /proc/$hpid/stat)
wait "$wpid"
msgs=$("$bin/hdx" query -d "$D" --type ORU^R01 --count)
curl -s --cacert "$D/ca.pem" -H "Authorization: Bearer $key" "https://localhost:$hport/metrics" \
  >"$work/metrics.txt"
$PY - "$work/ws.json" "$work/metrics.txt" "$n" "$msgs" "$cpu0" "$cpu1" "$secs" "$disk" <<'EOF'
import json, sys
r = json.load(open(sys.argv[1]))
n, msgs, cpu = int(sys.argv[3]), int(sys.argv[4]), (int(sys.argv[6]) - int(sys.argv[5])) / 100
b = {}
for line in open(sys.argv[2]):
    if line.startswith("hdx_fhir_notification_latency_seconds_bucket"):
        le = line.split('le="')[1].split('"')[0]
        b[le] = float(line.split()[-1])
tot = b.get("+Inf", 0)
srv = " ".join("le%s=%.3f" % (k, v / tot) for k, v in b.items() if tot and k in ("0.001", "0.0025", "0.005", "0.01", "0.025"))
print("fhirsub subscribers=%d messages=%d expected_events=%d events=%d disorder=%d" % (n, msgs, n * msgs, r["events"], r["disorder"]))
print("fhirsub delivery_p50_ms=%.2f delivery_p99_ms=%.2f delivery_max_ms=%.2f" % (r["lat_p50_ms"], r["lat_p99_ms"], r["lat_max_ms"]))
print("fhirsub ping_rtt_p50_ms=%.2f ping_rtt_p99_ms=%.2f pings=%d" % (r["rtt_p50_ms"], r["rtt_p99_ms"], r["pings"]))
print("fhirsub ratio_p99_to_ping_p99=%.2f hdxd_cpu_cores=%.2f" % (r["lat_p99_ms"] / r["rtt_p99_ms"], cpu / float(sys.argv[7])))
print("fhirsub server_side_cumulative %s" % srv)
d = dict(kv.split("=") for kv in sys.argv[8].split()[1:])
floor = 2 * float(d["fdatasync_p50_ms"])
print("fhirsub disk_fdatasync_p50_ms=%s disk_fdatasync_p99_ms=%s disk_floor_ms=%.3f delivery_p50_over_disk_floor=%.1f"
      % (d["fdatasync_p50_ms"], d["fdatasync_p99_ms"], floor, r["lat_p50_ms"] / floor))
EOF
