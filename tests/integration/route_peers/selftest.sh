#!/usr/bin/env bash
# selftest.sh: proves each route peer on its own (127.0.0.1 only) with existing clients:
# mllp_send --loose, socat, openssl s_client and curl. Exit 0 when every check passes.
# Not in ctest. HDX_KEEP=1 keeps the scratch directory.
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
PY=/usr/bin/python3
T=$(mktemp -d)
PIDS=()
CHECKS=0
FAILED=0

cleanup() {
    local rc=$? p
    set +e
    for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null; done
    if [ "$rc" -ne 0 ] || [ "$FAILED" -ne 0 ]; then
        echo "selftest: FAILED, kept $T" >&2
    elif [ "${HDX_KEEP:-0}" != 1 ]; then rm -rf "$T"; fi
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

fail() { FAILED=1; echo "selftest: FAIL: $*" >&2; exit 1; }
check() { # EXPECTED ACTUAL WHAT
    [ "$1" == "$2" ] || fail "$3: expected [$1], got [$2]"
    CHECKS=$((CHECKS + 1))
}
say() { echo "selftest: $*" >&2; }

# start NAME CMD...: starts a peer with --ready/--out in $T, waits (10 s at most) for its port.
start() {
    local name=$1 i
    shift
    rm -f "$T/$name.ready" "$T/$name.jsonl"
    "$@" --ready "$T/$name.ready" --out "$T/$name.jsonl" >"$T/$name.stdout" 2>"$T/$name.stderr" &
    PID=$!
    PIDS+=("$PID")
    for ((i = 0; i < 100; i++)); do
        [ -s "$T/$name.ready" ] && break
        kill -0 "$PID" 2>/dev/null || fail "$name exited: $(cat "$T/$name.stderr")"
        sleep 0.1
    done
    [ -s "$T/$name.ready" ] || fail "$name not ready in 10 s"
    PORT=$(cat "$T/$name.ready")
    REC=$T/$name.jsonl
    check "ready $PORT" "$(head -n 1 "$T/$name.stdout")" "$name ready line"
}
# stop: SIGTERM the last peer, wait (5 s at most), expect exit status 0.
stop() {
    local i
    kill -TERM "$PID"
    for ((i = 0; i < 50; i++)); do kill -0 "$PID" 2>/dev/null || break; sleep 0.1; done
    kill -0 "$PID" 2>/dev/null && fail "peer $PID still running 5 s after SIGTERM"
    wait "$PID" && rc=0 || rc=$?
    check 0 "$rc" "exit status after SIGTERM"
}
# wait_lines FILE N: until FILE has N lines (5 s at most); then exactly N.
wait_lines() {
    local i
    for ((i = 0; i < 50; i++)); do [ "$(nlines "$1")" -ge "$2" ] && break; sleep 0.1; done
    check "$2" "$(nlines "$1")" "records in $(basename "$1")"
}
nlines() { if [ -f "$1" ]; then wc -l <"$1"; else echo 0; fi; }
rec() { jq -r "$2" <(sed -n "${1}p" "$REC"); } # rec N JQ-EXPR
acks() { tr '\r' '\n' | grep -ao 'MSA|[A-Z]*|[^|]*' | cut -d'|' -f2,3 | tr -d '\034' | paste -sd' '; }
sha() { printf '%s' "$1" | sha256sum | cut -d' ' -f1; }

"$HERE/install.sh"
"$HERE/pki.sh" "$T/pki" >/dev/null
P=$T/pki
EHR=(node "$HERE/ehr.mjs")
BRK=("$PY" "$HERE/broken_mllp.py")
HTS=("$PY" "$HERE/https_receiver.py")
S_CLIENT=(openssl s_client -quiet -no_ign_eof -servername localhost -CAfile "$P/ca.pem" -verify_return_error)
CC=(-cert "$P/client.pem" -key "$P/client.key")

# test messages: LF-separated for mllp_send --loose, and MLLP frames for socat / s_client
M1=$'MSH|^~\\&|HDX|HOSP|EHR|HOSP|20261202120000||ORU^R01^ORU_R01|RT-0001|P|2.5.1\rPID|1||PAT-1^^^HOSP^MR||DOE^ONE\rOBX|1|NM|8867-4^Heart rate^LN||72|/min|||||F'
M2=$'MSH|^~\\&|HDX|HOSP|EHR|HOSP|20261202120000||ADT^A01|RT-0002|P|2.5.1\rPID|1||PAT-2^^^HOSP^MR||DOE^TWO'
M3=$'MSH|^~\\&|HDX|HOSP|EHR|HOSP|20261202120000||ORU^R01|RT-0003|P|2.5.1\rPID|1||PAT-3^^^HOSP^MR||DOE^THREE'
printf '%s\n%s\n' "$M1" "$M2" | tr '\r' '\n' >"$T/two.hl7"
printf '%s\n%s\n%s\n' "$M1" "$M2" "$M3" | tr '\r' '\n' >"$T/three.hl7"
printf '%s\n' "$M1" | tr '\r' '\n' >"$T/one.hl7"
printf '\v%s\034\r' "$M1" >"$T/f1"
printf '\v%s\034\r' "$M2" >"$T/f2"

# ================= ehr.mjs (node-hl7-server 2.3.0) =================
say "ehr: plain, AA"
start ehr "${EHR[@]}" --port 0
out=$(timeout 10 mllp_send --loose -p "$PORT" -f "$T/two.hl7" 127.0.0.1)
check "AA|RT-0001 AA|RT-0002" "$(acks <<<"$out")" "ehr AA answers"
check 1 "$(grep -ac $'^\vMSH|^~\\\\&|EHR|HOSP|HDX|HOSP|[0-9]*||ACK^R01^ACK_R01|ACK|P|2.5.1\rMSA|AA|RT-0001\034\r$' <<<"$out")" "ehr ACK bytes"
wait_lines "$REC" 2
check "1 RT-0001 ORU^R01^ORU_R01 PAT-1^^^HOSP^MR null" "$(rec 1 '"\(.n) \(.msh10) \(.msh9) \(.pid3) \(.peer_cn)"')" "ehr record 1"
check "$M1" "$(rec 1 .text)" "ehr record 1 text (mllp_send drops the last CR)"
check "${#M1} $(sha "$M1")" "$(rec 1 '"\(.bytes) \(.sha256)"')" "ehr record 1 bytes, sha256"
check "2 RT-0002 ADT^A01 $(sha "$M2")" "$(rec 2 '"\(.n) \(.msh10) \(.msh9) \(.sha256)"')" "ehr record 2"
stop

say "ehr: AE for the first message, AR for RT-0002, AA after"
start ehr "${EHR[@]}" --port 0 --ae-first 1 --ar-ids RT-0002
check "AE|RT-0001 AR|RT-0002 AA|RT-0003" "$(timeout 10 mllp_send --loose -p "$PORT" -f "$T/three.hl7" 127.0.0.1 | acks)" "ehr AE/AR/AA"
wait_lines "$REC" 3
stop
say "ehr: AE forever (environment options), 800 ms delay"
EHR_PORT=0 EHR_ACK=AE EHR_DELAY=800 start ehr "${EHR[@]}"
t0=$(date +%s%N)
check "AE|RT-0001 AE|RT-0002" "$(timeout 10 mllp_send --loose -p "$PORT" -f "$T/two.hl7" 127.0.0.1 | acks)" "ehr AE forever"
ms=$((($(date +%s%N) - t0) / 1000000))
[ "$ms" -ge 1600 ] || fail "two answers delayed 800 ms each came after $ms ms"
stop

say "ehr: node-hl7-server 2.3.0 quirks (README): pipelining, split frames, MSH-12 2.9"
start ehr "${EHR[@]}" --port 0
check "AA|RT-0001 AA|RT-0002" "$( (cat "$T/f1" "$T/f2"; sleep 1) | timeout 10 socat -t 1 - "TCP:127.0.0.1:$PORT" | acks)" "two frames in one write"
wait_lines "$REC" 2
check "RT-0001 true RT-0002 true" "$(jq -r '"\(.msh10) \(.reparsed)"' "$REC" | paste -sd' ')" "pipelined records are reparsed"
check "" "$( (head -c 40 "$T/f1"; sleep 0.3; tail -c +41 "$T/f1"; sleep 1) | timeout 10 socat -t 1 - "TCP:127.0.0.1:$PORT" | acks)" \
    "a frame split over two reads gets no answer"
printf '\v%s\034\r' "${M3/|2.5.1/|2.9}" >"$T/f29"
out=$( (cat "$T/f29"; sleep 1) | timeout 10 socat -t 1 - "TCP:127.0.0.1:$PORT" | acks)
[[ "$out" =~ ^AE\|[A-Za-z0-9_-]{20}$ ]] || fail "MSH-12 2.9: expected AE with a random MSA-2, got [$out]"
wait_lines "$REC" 3
check "RT-0003 null" "$(rec 3 '"\(.msh10) \(.reparsed)"')" "the 2.9 message is recorded, the split one is not"
stop

say "ehr: mutual TLS"
start ehr "${EHR[@]}" --port 0 --key "$P/server.key" --cert "$P/server.pem" --client-ca "$P/ca.pem"
out=$( (cat "$T/f1"; sleep 1) | timeout 10 "${S_CLIENT[@]}" "${CC[@]}" -connect "127.0.0.1:$PORT" 2>/dev/null)
check "AA|RT-0001" "$(acks <<<"$out")" "ehr TLS AA (s_client, client cert)"
out=$( (cat "$T/f2"; sleep 1) | timeout 10 socat -t 1 - "OPENSSL:127.0.0.1:$PORT,cert=$P/client.pem,key=$P/client.key,cafile=$P/ca.pem,verify=1")
check "AA|RT-0002" "$(acks <<<"$out")" "ehr TLS AA (socat, client cert)"
wait_lines "$REC" 2
check "hdx-route hdx-route" "$(jq -r .peer_cn "$REC" | paste -sd' ')" "ehr peer_cn"
out=$( (cat "$T/f1"; sleep 1) | timeout 10 "${S_CLIENT[@]}" -connect "127.0.0.1:$PORT" 2>&1 || true)
check "" "$(acks <<<"$out")" "ehr: no ACK without a client certificate"
sleep 0.3
check 2 "$(wc -l <"$REC")" "ehr: nothing recorded without a client certificate"
stop

say "pki: the bad server certificates fail verification (s_client against ehr)"
for bad in expired:'certificate has expired' wrongname:'hostname mismatch' otherca-server:'unable to get local issuer certificate'; do
    name=${bad%%:*} why=${bad#*:}
    start ehr "${EHR[@]}" --port 0 --key "$P/$name.key" --cert "$P/$name.pem"
    out=$( (cat "$T/f1"; sleep 0.5) | timeout 10 "${S_CLIENT[@]}" -verify_hostname localhost -connect "127.0.0.1:$PORT" 2>&1 || true)
    grep -q "$why" <<<"$out" || fail "s_client against $name.pem: no '$why' in: $out"
    check "" "$(acks <<<"$out")" "no ACK through $name.pem"
    stop
done
check 600 "$(stat -c %a "$P/client.key")" "client key mode"

# ================= broken_mllp.py =================
bstart() { start brk "${BRK[@]}" "$@"; }
say "broken_mllp: aa, ae-forever, ar (mllp_send)"
for m in aa:AA ae-forever:AE ar:AR; do
    bstart --mode "${m%%:*}"
    check "${m#*:}|RT-0001 ${m#*:}|RT-0002" "$(timeout 10 mllp_send --loose -p "$PORT" -f "$T/two.hl7" 127.0.0.1 | acks)" "broken ${m%%:*}"
    wait_lines "$REC" 2
    check "1 1 RT-0001 ORU^R01^ORU_R01 PAT-1^^^HOSP^MR ${#M1} $(sha "$M1") false" \
        "$(rec 1 '"\(.n) \(.conn) \(.msh10) \(.msh9) \(.pid3) \(.bytes) \(.sha256) \(has("peer_cn"))"')" "broken ${m%%:*} record"
    stop
done

say "broken_mllp: silent, garbage, not-hl7, close-mid-frame (socat)"
bstart --mode silent
check "" "$( (cat "$T/f1"; sleep 1) | timeout 10 socat -t 1 - "TCP:127.0.0.1:$PORT" | od -An -c)" "silent answers nothing"
wait_lines "$REC" 1
stop
bstart --mode garbage
out=$( (cat "$T/f1"; sleep 1) | timeout 10 socat -t 1 - "TCP:127.0.0.1:$PORT" | tr -d '\0')
grep -q 'garbage, no MLLP frame' <<<"$out" || fail "garbage: got [$out]"
[[ "$out" != *$'\v'* && "$out" != *$'\034'* ]] || fail "garbage contains MLLP framing bytes"
CHECKS=$((CHECKS + 1))
stop
bstart --mode not-hl7
check "$(printf '\vthis is not an HL7 message\034\r' | od -An -c)" \
    "$( (cat "$T/f1"; sleep 1) | timeout 10 socat -t 1 - "TCP:127.0.0.1:$PORT" | od -An -c)" "not-hl7 frame"
stop
bstart --mode close-mid-frame
out=$( (cat "$T/f1"; sleep 1) | timeout 10 socat -t 1 - "TCP:127.0.0.1:$PORT" | tr '\r' '\n')
[[ "$out" == $'\vMSH|'* && "$out" != *$'\034'* ]] || fail "close-mid-frame: got [$out]"
CHECKS=$((CHECKS + 1))
stop

say "broken_mllp: wrong-msa2 (late ACK of the previous message)"
bstart --mode wrong-msa2
check "AA|RT-0001" "$( (cat "$T/f1"; sleep 0.5; cat "$T/f2"; sleep 1) | timeout 10 socat -t 1 - "TCP:127.0.0.1:$PORT" | acks)" \
    "RT-0001 unanswered, then RT-0002 answered with RT-0001's ACK"
check "AA|RT-0002" "$( (cat "$T/f1"; sleep 1) | timeout 10 socat -t 1 - "TCP:127.0.0.1:$PORT" | acks)" \
    "a resend of RT-0001 (new connection) gets RT-0002's held ACK"
wait_lines "$REC" 3
check "1 1 2 RT-0001 RT-0002 RT-0001" "$(jq -r '"\(.conn) \(.msh10)"' "$REC" | paste -sd' ' | awk '{print $1,$3,$5,$2,$4,$6}')" "wrong-msa2 records"
stop
bstart --mode wrong-msa2 --late-ms 1000
check "AA|RT-0001 AA|RT-0002" "$( (cat "$T/f1"; sleep 0.3; cat "$T/f2"; sleep 2) | timeout 10 socat -t 1 - "TCP:127.0.0.1:$PORT" | acks)" \
    "--late-ms: RT-0002 first sees RT-0001's ACK, then its own"
stop

say "broken_mllp: reset (mllp_send sees ECONNRESET)"
bstart --mode reset
rc=0
timeout 10 mllp_send --loose -p "$PORT" -f "$T/one.hl7" 127.0.0.1 >"$T/out" 2>"$T/err" || rc=$?
check 1 "$rc" "mllp_send exit status after RST"
grep -q ConnectionResetError "$T/err" || fail "reset: mllp_send did not see a reset: $(cat "$T/err")"
wait_lines "$REC" 1
stop

say "broken_mllp: TLS with a required client certificate"
bstart --mode aa --key "$P/server.key" --cert "$P/server.pem" --client-ca "$P/ca.pem"
check "AA|RT-0001" "$( (cat "$T/f1"; sleep 1) | timeout 10 "${S_CLIENT[@]}" "${CC[@]}" -connect "127.0.0.1:$PORT" 2>/dev/null | acks)" "broken TLS aa"
wait_lines "$REC" 1
check "hdx-route $(sha "$M1")" "$(rec 1 '"\(.peer_cn) \(.sha256)"')" "broken TLS record"
check "" "$( (cat "$T/f1"; sleep 1) | timeout 10 "${S_CLIENT[@]}" -connect "127.0.0.1:$PORT" 2>/dev/null | acks)" "broken TLS: no ACK without a client cert"
sleep 0.3
check 1 "$(wc -l <"$REC")" "broken TLS: nothing recorded without a client cert"
stop
bstart --mode reset --key "$P/server.key" --cert "$P/server.pem"
out=$( (cat "$T/f1"; sleep 1) | timeout 10 "${S_CLIENT[@]}" -connect "127.0.0.1:$PORT" 2>&1 || true)
grep -q 'errno=104' <<<"$out" || fail "TLS reset: s_client saw no ECONNRESET: $out"
wait_lines "$REC" 1
check null "$(rec 1 .peer_cn)" "TLS without client CA: peer_cn null"
stop

# ================= https_receiver.py =================
CURL=(curl -sS -o "$T/body" -w '%{http_code}' -H 'Content-Type: x-application/hl7-v2+er7' --data-binary "@$T/f1.txt")
printf '%s\r' "$M1" >"$T/f1.txt"
say "https_receiver: plain HTTP, 200"
start hts "${HTS[@]}"
check 200 "$(timeout 10 "${CURL[@]}" "http://127.0.0.1:$PORT/hl7/v2")" "plain POST status"
check '{"status": 200}' "$(cat "$T/body")" "plain POST body"
check 405 "$(timeout 10 curl -sS -o /dev/null -w '%{http_code}' "http://127.0.0.1:$PORT/")" "GET is 405"
wait_lines "$REC" 1
check "1 /hl7/v2 x-application/hl7-v2+er7 $((${#M1} + 1)) $(sha "$M1"$'\r') false" \
    "$(rec 1 '"\(.n) \(.path) \(.content_type) \(.length) \(.sha256) \(has("peer_cn"))"')" "plain POST record"
check "$M1"$'\r' "$(rec 1 .text)" "plain POST text"
stop

say "https_receiver: mutual TLS, first 2 fail with 503, then 201"
start hts "${HTS[@]}" --key "$P/server.key" --cert "$P/server.pem" --client-ca "$P/ca.pem" --fail-first 2 --fail-status 503 --status 201
got=""
for i in 1 2 3 4; do
    got+="$(timeout 10 "${CURL[@]}" --cacert "$P/ca.pem" --cert "$P/client.pem" --key "$P/client.key" "https://localhost:$PORT/in") "
done
check "503 503 201 201 " "$got" "fail-first statuses"
wait_lines "$REC" 4
check "hdx-route" "$(rec 4 .peer_cn)" "HTTPS peer_cn"
rc=0
timeout 10 "${CURL[@]}" --cacert "$P/ca.pem" "https://localhost:$PORT/in" >/dev/null 2>&1 || rc=$?
[ "$rc" -ne 0 ] || fail "HTTPS without a client certificate succeeded"
sleep 0.3
check 4 "$(wc -l <"$REC")" "nothing recorded without a client certificate"
stop

say "https_receiver: 204, 400, 500 forever, delay"
for s in 204 400 500; do
    start hts "${HTS[@]}" --key "$P/server.key" --cert "$P/server.pem" --status "$s"
    check "$s $s" "$(timeout 10 "${CURL[@]}" --cacert "$P/ca.pem" "https://localhost:$PORT/a") $(timeout 10 "${CURL[@]}" --cacert "$P/ca.pem" "https://localhost:$PORT/b")" "status $s"
    [ "$s" != 204 ] || check 0 "$(stat -c %s "$T/body")" "204 has no body"
    wait_lines "$REC" 2
    stop
done
start hts "${HTS[@]}" --delay-ms 800
t=$(timeout 10 curl -sS -o /dev/null -w '%{time_total}' --data-binary "@$T/f1.txt" "http://127.0.0.1:$PORT/")
awk -v t="$t" 'BEGIN { exit !(t >= 0.8) }' || fail "delay 800 ms: answered after $t s"
stop

say "https_receiver: curl rejects the bad server certificates"
for name in expired wrongname otherca-server; do
    start hts "${HTS[@]}" --key "$P/$name.key" --cert "$P/$name.pem"
    rc=0
    timeout 10 "${CURL[@]}" --cacert "$P/ca.pem" "https://localhost:$PORT/" >/dev/null 2>"$T/err" || rc=$?
    check 60 "$rc" "curl against $name.pem (CURLE_PEER_FAILED_VERIFICATION)"
    stop
done

say "PASS ($CHECKS checks)"
