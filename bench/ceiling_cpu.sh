#!/usr/bin/env bash
# ceiling_cpu.sh BIN_DIR: the CPU the ACK-only ceiling costs per message, to bound what hdx
# could reach on this machine (docs/PERFORMANCE.md, "What this machine allows"). Runs the
# ACK-only server (BIN_DIR/ackserver) driven by BIN_DIR/hdx bench, CONNS connections with INFL
# in flight each, SECS seconds, and prints one line: the rate, the server's and the client's
# cores over the middle of the run (from /proc and the client's own report), and both as
# microseconds of CPU per message. Then one core's AES-256-GCM, SHA-256 and HMAC-SHA256 speed
# (openssl speed) on the sizes hdx hashes and seals per record: 1 KiB bodies, 64-byte tokens.
# Knobs: SECS (8), INFL (1), CONNS (64), SIZE (unset: hdx bench's own ~1 KB messages).
# Loopback only; the server stops on its own (ackserver -t).
set -u
bin=$1
S=${SECS:-8}
I=${INFL:-1}
w=$(mktemp -d)
trap 'rm -rf "$w"' EXIT
. "$(dirname "$0")/quick_lib.sh"
start_ackserver "$w/c" $((S + 60))
hz=$(getconf CLK_TCK)
ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
timeout $((S + 60)) "$bin/hdx" bench -d "$w/c" --to "127.0.0.1:$ap" --connections "${CONNS:-64}" \
  --seconds "$S" --inflight "$I" ${SIZE:+--size "$SIZE"} >"$w/c.out" 2>&1 &
bp=$!
sleep 2
a0=$(ticks "$apid")
t0=$(date +%s.%N)
sleep $((S - 3))
a1=$(ticks "$apid")
t1=$(date +%s.%N)
wait "$bp"
kill "$apid" 2>/dev/null
wait "$apid" 2>/dev/null
rate=$(grep -o 'msgs_per_s=[0-9.]*' "$w/c.out" | tail -1 | cut -d= -f2)
cl=$(grep -o 'client_cores=[0-9.]*' "$w/c.out" | tail -1 | cut -d= -f2)
awk -v a0="$a0" -v a1="$a1" -v t0="$t0" -v t1="$t1" -v hz="$hz" -v r="${rate:-0}" -v cl="${cl:-0}" \
  -v i="$I" 'BEGIN { sc = (a1 - a0) / hz / (t1 - t0); if (r <= 0) { print "ceiling: no rate"; exit 1 }
    printf "ceiling inflight=%s msgs_per_s=%s server_cores=%.2f client_cores=%.2f server_us_per_msg=%.2f client_us_per_msg=%.2f\n",
      i, r, sc, cl, sc / r * 1e6, cl / r * 1e6 }'
for spec in "aes-256-gcm 1024 -evp" "sha256 1024 -evp" "sha256 64 -hmac"; do
  set -- $spec
  openssl speed -elapsed -seconds 2 -bytes "$2" "$3" "$1" 2>/dev/null | tail -1 |
    awk -v a="$1" -v b="$2" -v m="$3" '{ v = $NF; sub(/k$/, "", v); ops = v * 1000 / b;
      printf "one core %s%s on %s bytes: %.2f us each\n", (m == "-hmac" ? "hmac-" : ""), a, b, 1e6 / ops }'
done
