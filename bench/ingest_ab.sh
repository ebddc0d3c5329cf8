#!/usr/bin/env bash
# Ingest with issue 11's authorization and audit on (A: this tree's build) against the build of
# the commit before issue 11's work began (B: AB_BASE, 7b9e638, the last of issue 10; no policy
# engine, no audit records), side by side in one run: the same client (this tree's hdx bench),
# the same settings, a fresh data directory per run (each made by its own build's hdx init and
# hdx device add bench), alternating A B A B ... for each in-flight depth. Then, per round, C: the
# A build again with a clinician's GET /api/stream (curl -N, bearer token, every bench patient on
# the clinician's care team, so each event is a policy decision and a disclosure) and an MLLP
# subscriber (hdx tail --latency) attached during the load: the cost of per-event decisions and
# disclosure auditing; and D: the A build with the MLLP subscriber only (what C costs beyond one
# subscriber's delivery is the stream's: its reads, JSON, TLS, policy decisions and audit).
# Prints one line per run ("ab run=... msgs_per_s=... hdxd_cores=... hdxd_us_per_msg=..."), and at
# the end the median A/B and C/A ratios per depth, each ratio over runs of the same round, of
# msgs/s and of hdxd's CPU per message (the steadier figure when other work shares the cores).
# Knobs (environment): AB_BASE (7b9e638), AB_BASE_BIN (a directory with that commit's release
# hdx and hdxd; default: built in the worktree AB_BASE_TREE, /work/wt-bench-base, made with
# git worktree add when missing), AB_BIN (this tree's build, default build), AB_ROUNDS (3),
# AB_SECONDS (10), AB_CONNECTIONS (64), AB_INFLIGHT ("1 8"), AB_VARIANTS ("A B C"; any of A B C D,
# run in that order each round; AB_STREAM=0 means "A B"), AB_PERF (a directory: perf record of
# hdxd during each C and D run, a report by symbol per run there).
# Loopback only; every load is bounded by timeout(1).
set -euo pipefail
cd "$(dirname "$0")/.."
bin=${AB_BIN:-$PWD/build}
base=${AB_BASE:-7b9e638}
rounds=${AB_ROUNDS:-3}
secs=${AB_SECONDS:-10}
conns=${AB_CONNECTIONS:-64}
depths=${AB_INFLIGHT:-1 8}
variants=${AB_VARIANTS:-$([ "${AB_STREAM:-1}" = 0 ] && echo "A B" || echo "A B C")}
perf_dir=${AB_PERF:-}
limit=$((secs + 120))
if [ -z "${AB_BASE_BIN:-}" ]; then
  tree=${AB_BASE_TREE:-/work/wt-bench-base}
  [ -d "$tree" ] || git worktree add --detach "$tree" "$base" >/dev/null
  [ "$(git -C "$tree" rev-parse HEAD)" = "$(git rev-parse "$base^{commit}")" ] || { echo "ab: $tree is not at $base" >&2; exit 1; }
  [ -x "$tree/build/hdxd" ] || (cd "$tree" && bash scripts/build.sh build)
  AB_BASE_BIN=$tree/build
fi
bbin=$AB_BASE_BIN
work=$(mktemp -d)
hpid=''
spids=()
cleanup() {
  for p in $hpid "${spids[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT
free_port() { /usr/bin/python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
cpu_ticks() { awk '{ sub(/^.*\) /, ""); split($0, f, " "); print f[12] + f[13] }' /proc/"$1"/stat; }
kv() { { grep -o "\(^\| \)$2=[^ ]*" "$1" 2>/dev/null || true; } | tail -1 | sed "s/^ *$2=//" | grep . || echo na; }

start() { # BIN DIR [http]: hdxd of BIN on DIR -> hpid, port, sport, hport
  local b=$1 d=$2 http=${3:-}
  port=$(free_port) sport=$(free_port) hport=$(free_port)
  local args=(-o "mllp.listen=127.0.0.1:$port" -o "sub.listen=127.0.0.1:$sport")
  # the base build has no HTTPS port; the current one serves it (default configuration)
  [ -n "$http" ] && args+=(-o "http.listen=127.0.0.1:$hport")
  "$b/hdxd" -c "$d/hdx.conf" "${args[@]}" 2>"$d/hdxd.log" &
  hpid=$!
  for _ in $(seq 200); do grep -q event=listening "$d/hdxd.log" && return 0; kill -0 "$hpid" || break; sleep 0.05; done
  cat "$d/hdxd.log"
  exit 1
}
stop() {
  kill "$hpid" 2>/dev/null || true
  for _ in $(seq 400); do kill -0 "$hpid" 2>/dev/null || break; sleep 0.05; done
  kill -9 "$hpid" 2>/dev/null || true
  wait "$hpid" 2>/dev/null || true
  hpid=
}
# one NAME BUILD_BIN INFLIGHT [stream|sub]: a fresh data directory, hdxd, hdx bench (this tree's);
# stream: a clinician's /api/stream and a subscriber attached; sub: the subscriber only
one() {
  local name=$1 b=$2 n=$3 withstream=${4:-} d=$work/$1 c0 c1 t0 t1 bpid rc=0 ppid=
  "$b/hdx" init "$d" >/dev/null 2>"$work/cli.err"
  "$b/hdx" device add bench -d "$d" >/dev/null 2>>"$work/cli.err"
  if [ -n "$withstream" ]; then
    printf 'Tangerine-Orbit-Lantern-42\n' >"$d/pw"
    secret=$("$b/hdx" user add abclin --role clinician -d "$d" --password-file "$d/pw" --no-qr | sed -n 's/^totp=.*secret=\([A-Z2-7]*\)&.*/\1/p')
    "$b/hdx" training set abclin "$(date -u +%F)" -d "$d" >/dev/null
    # hdx bench's connection i sends for patient SIM-(10000+i)
    for i in $(seq 0 "$conns"); do "$b/hdx" careteam add abclin "SIM-$((10000 + i))" -d "$d" >/dev/null; done
    sub=$("$b/hdx" device add absub --role subscriber -d "$d")
  fi
  if [ "$b" = "$bin" ]; then start "$b" "$d" http; else start "$b" "$d"; fi
  if [ -n "$withstream" ]; then
    curl -sS --max-time 20 --cacert "$d/ca.pem" -H 'Content-Type: application/json' -o "$d/login.json" \
      --data-binary "{\"username\":\"abclin\",\"password\":\"$(head -1 "$d/pw")\",\"totp\":\"$(oathtool --totp -b "$secret")\"}" \
      "https://localhost:$hport/auth/login"
    tok=$(/usr/bin/python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["token"])' "$d/login.json")
    if [ "$withstream" = stream ]; then
      (curl -sSN --max-time "$limit" --cacert "$d/ca.pem" -H "Authorization: Bearer $tok" \
        "https://localhost:$hport/api/stream" | grep -c '^id: ' >"$d/stream.count" || true) &
      spids+=($!)
    else
      echo none >"$d/stream.count"
    fi
    (timeout "$limit" "$b/hdx" tail -d "$d" --to 127.0.0.1:$sport --cert "$(sed -n 's/^cert=//p' <<<"$sub")" \
      --key "$(sed -n 's/^key=//p' <<<"$sub")" --latency >"$d/tail.out" 2>&1 || true) &
    spids+=($!)
    sleep 1
  fi
  echo "ab: $name [loadavg $(cut -d' ' -f1-3 /proc/loadavg)]"
  timeout "$limit" "$bin/hdx" bench -d "$d" --to 127.0.0.1:$port --connections "$conns" --seconds "$secs" --inflight "$n" >"$d/bench.out" 2>&1 &
  bpid=$!
  for _ in $(seq 600); do grep -q 'in flight per connection' "$d/bench.out" 2>/dev/null && break; kill -0 $bpid 2>/dev/null || break; sleep 0.02; done
  if [ -n "$perf_dir" ] && [ -n "$withstream" ]; then
    mkdir -p "$perf_dir"
    perf record -q -F 999 -p "$hpid" -o "$perf_dir/$name.perf.data" -- sleep "$((secs - 1))" >/dev/null 2>&1 &
    ppid=$!
  fi
  c0=$(cpu_ticks "$hpid") t0=$(date +%s%N)
  wait $bpid || rc=$?
  c1=$(cpu_ticks "$hpid") t1=$(date +%s%N)
  [ "$rc" = 0 ] || { echo "!! bench $name exited $rc"; cat "$d/bench.out"; }
  if [ -n "$ppid" ]; then
    wait "$ppid" || true
    perf report -i "$perf_dir/$name.perf.data" --no-children --sort comm,dso,sym --percent-limit 0.3 --stdio >"$perf_dir/$name.perf.txt" 2>/dev/null || true
  fi
  sleep 1 # the stream and the subscriber drain
  stop
  local extra=
  if [ -n "$withstream" ]; then
    for _ in $(seq 100); do [ -s "$d/stream.count" ] && grep -q delivery "$d/tail.out" 2>/dev/null && break; sleep 0.1; done
    extra=" stream_events=$(cat "$d/stream.count" 2>/dev/null || echo na) subscriber_$(grep -o 'delivery n=[0-9]*' "$d/tail.out" | sed 's/delivery //' || echo n=na)"
    extra+=" subscriber_p99_ms=$(kv "$d/tail.out" p99_ms) access_audit_records=$("$b/hdx" audit query -d "$d" --event access | grep -c '^seq=' || true)"
  fi
  [ "$b" = "$bin" ] && extra+=" audit_records=$("$b/hdx" query -d "$d" --kind audit --count)"
  local cs cores
  cores=$(awk -v a="$c0" -v b="$c1" -v hz="$(getconf CLK_TCK)" -v w="$(((t1 - t0) / 1000000))" 'BEGIN { printf "%.2f", (b - a) / hz / (w / 1000) }')
  cs=$(grep -o 'event=commit_stats.*' "$d/hdxd.log" | tail -1)
  echo "ab run=$name inflight=$n msgs_per_s=$(kv "$d/bench.out" msgs_per_s) p99_ms=$(kv "$d/bench.out" p99_ms) hdxd_cores=$cores hdxd_us_per_msg=$(awk -v c="$cores" -v r="$(kv "$d/bench.out" msgs_per_s)" 'BEGIN { if (r + 0 > 0) printf "%.1f", c * 1e6 / r; else print "na" }') client_cores=$(kv "$d/bench.out" client_cores) mean_batch=$(awk -v l="$cs" 'BEGIN { match(l, /batches=[0-9]+/); b = substr(l, RSTART + 8, RLENGTH - 8); match(l, / records=[0-9]+/); r = substr(l, RSTART + 9, RLENGTH - 9); if (b > 0) printf "%.1f", r / b; else print "na" }')$extra" | tee -a "$work/runs"
  rm -rf "$d"
}

echo "ab: A = $(git rev-parse --short HEAD) ($bin), B = $(git rev-parse --short "$base^{commit}") ($bbin), client = A's hdx bench; $conns connections, $secs s, depths $depths, $rounds rounds; $(nproc) cores; loadavg_start=$(cut -d' ' -f1 /proc/loadavg)"
for r in $(seq "$rounds"); do
  for n in $depths; do
    for v in $variants; do
      case $v in
        A) one "A$r-$n" "$bin" "$n" ;;
        B) one "B$r-$n" "$bbin" "$n" ;;
        C) one "C$r-$n" "$bin" "$n" stream ;;
        D) one "D$r-$n" "$bin" "$n" sub ;;
      esac
    done
  done
done
echo "ab: loadavg_end=$(cut -d' ' -f1 /proc/loadavg)"
# medians of the per-round ratios
for n in $depths; do
  awk -v n="$n" '
    { for (i = 2; i <= NF; i++) { split($i, kv, "="); v[kv[1]] = kv[2] }
      split(v["run"], p, "-"); k = substr(p[1], 1, 1); r = substr(p[1], 2);
      if (v["inflight"] == n) { rate[k, r] = v["msgs_per_s"]; us[k, r] = v["hdxd_us_per_msg"] } if (r > R) R = r }
    function ratios(x, y, out, uout,   r, m) { m = 0; for (r = 1; r <= R; r++) if (rate[x, r] > 0 && rate[y, r] > 0) { out[++m] = rate[x, r] / rate[y, r]; uout[m] = us[x, r] / us[y, r] } return m }
    function median(a, m,   i, j, t) { for (i = 1; i <= m; i++) for (j = i + 1; j <= m; j++) if (a[j] < a[i]) { t = a[i]; a[i] = a[j]; a[j] = t }
      return m % 2 ? a[(m + 1) / 2] : (a[m / 2] + a[m / 2 + 1]) / 2 }
    END { m = ratios("A", "B", ab, uab); c = ratios("C", "A", ca, uca); e = ratios("D", "A", da, uda); g = ratios("C", "D", cd, ucd)
      s = ""; for (r = 1; r <= R; r++) s = s sprintf("%s%d/%d", r > 1 ? "," : "", rate["A", r], rate["B", r])
      printf "ab summary inflight=%s", n
      if (m) printf " A_over_B_median=%.3f rounds=%d A/B=%s cpu_per_msg_A_over_B_median=%.3f", median(ab, m), m, s, median(uab, m)
      if (c) printf " C_over_A_median=%.3f cpu_per_msg_C_over_A_median=%.3f", median(ca, c), median(uca, c)
      if (e) printf " D_over_A_median=%.3f cpu_per_msg_D_over_A_median=%.3f", median(da, e), median(uda, e)
      if (g) printf " C_over_D_median=%.3f cpu_per_msg_C_over_D_median=%.3f", median(cd, g), median(ucd, g)
      printf "\n" }' "$work/runs"
done
