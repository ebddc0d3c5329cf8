# shellcheck shell=bash
# lib.sh: helpers sourced by the hdx integration tests (tests/integration/NN-*).
#
# A test does:   . "$(dirname "$0")/lib.sh"; hdx_setup; ... ; pass
# hdx_setup makes a fresh temporary directory ($T) and data directory ($D, via hdx init),
# and installs a trap that stops every hdxd the test started and removes $T (kept, with the
# hdxd log printed, when the test fails or HDX_KEEP=1).
#
# Environment: HDX_BIN (build dir with hdxd and hdx; set by ctest), HDX_SRC (repo root).

set -euo pipefail

HDX_BIN=${HDX_BIN:-$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)/build}
HDX_SRC=${HDX_SRC:-$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)}
HDX=$HDX_BIN/hdx
HDXD=$HDX_BIN/hdxd
PY=/usr/bin/python3             # Debian python: python3-hl7, cryptography (TEST-CLIENTS.md)
LIBDIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
CLIENT=$LIBDIR/hdxclient.py
TEST_NAME=$(basename "$0")

T=""
D=""
LOG=""
HDXD_PID=""
MLLP_PORT=""
SUB_PORT=""
LEGACY_PORT=""
_HDXD_PIDS=()
_EXTRA_PIDS=()
_FAILED=0
_CHECKS=0

log() { printf '[%s %s] %s\n' "$TEST_NAME" "$(date +%T.%N | cut -c1-12)" "$*" >&2; }

fail() {
    _FAILED=1
    printf '[%s] FAIL: %s\n' "$TEST_NAME" "$*" >&2
    exit 1
}

_cleanup() {
    local rc=$? p
    set +e
    for p in "${_EXTRA_PIDS[@]}"; do kill "$p" 2>/dev/null; done
    for p in "${_HDXD_PIDS[@]}"; do
        kill -TERM "$p" 2>/dev/null
    done
    for p in "${_HDXD_PIDS[@]}"; do
        _wait_pid_gone "$p" 50 || kill -KILL "$p" 2>/dev/null
    done
    if [ "$rc" -ne 0 ] || [ "$_FAILED" -ne 0 ]; then
        if [ -n "$LOG" ] && [ -f "$LOG" ]; then
            printf '[%s] --- last 40 lines of %s ---\n' "$TEST_NAME" "$LOG" >&2
            tail -n 40 "$LOG" >&2
        fi
        [ -n "$T" ] && printf '[%s] kept %s\n' "$TEST_NAME" "$T" >&2
    elif [ -n "$T" ] && [ "${HDX_KEEP:-0}" != 1 ]; then
        rm -rf "$T"
    fi
    exit "$rc"
}

# _wait_pid_gone PID TENTHS: 0 once PID has exited (reaped or not our child).
_wait_pid_gone() {
    local i
    for ((i = 0; i < $2; i++)); do
        kill -0 "$1" 2>/dev/null || return 0
        sleep 0.1
    done
    return 1
}

hdx_setup() {
    if [ ! -x "$HDX" ] || [ ! -x "$HDXD" ]; then
        echo "hdx/hdxd not built in $HDX_BIN" >&2
        exit 1
    fi
    T=$(mktemp -d)   # under $TMPDIR; its path is printed when the test fails
    trap _cleanup EXIT
    trap 'exit 130' INT TERM
    D=$T/data
    "$HDX" init "$D" >"$T/init.out" || fail "hdx init $D failed"
}

pass() {
    log "PASS ($_CHECKS checks)"
    exit 0
}

# ---------- assertions ----------

ok() { _CHECKS=$((_CHECKS + 1)); }

assert_eq() { # EXPECTED ACTUAL WHAT
    [ "$1" == "$2" ] || fail "$3: expected [$1], got [$2]"
    ok
}

assert_ne() { # UNEXPECTED ACTUAL WHAT
    [ "$1" != "$2" ] || fail "$3: did not expect [$1]"
    ok
}

# A here-string, not a pipe: under pipefail, grep -q leaving at its first match while printf
# still writes (bash's printf writes the string and its newline apart) made the pipe fail
# with SIGPIPE, and a match was reported as none (test 52, once in CI).
assert_match() { # ERE TEXT WHAT
    grep -Eq -- "$1" <<<"$2" || fail "$3: [$2] does not match /$1/"
    ok
}

assert_no_match() { # ERE TEXT WHAT
    if grep -Eq -- "$1" <<<"$2"; then fail "$3: [$2] matches /$1/"; fi
    ok
}

assert_le() { # A B WHAT   (integers: A <= B)
    [ "$1" -le "$2" ] || fail "$3: $1 > $2"
    ok
}

# assert_rc EXPECTED CMD...: runs CMD, asserts its exit status; its stdout is in $OUT.
assert_rc() {
    local want=$1 rc=0
    shift
    OUT=$("$@" 2>"$T/last.err") || rc=$?
    [ "$rc" -eq "$want" ] || fail "exit $rc (wanted $want): $* -- stdout [$OUT] stderr [$(cat "$T/last.err")]"
    ok
}

file_mode() { stat -c %a "$1"; }

# ---------- ports and processes ----------

# free_ports N: N distinct loopback TCP ports that were free a moment ago.
free_ports() {
    # Below the kernel's ephemeral range (ip_local_port_range, 32768-60999 by default): a port
    # the kernel handed out could be taken again, as the local port of some client connection
    # of a test running in parallel, before hdxd binds it (EADDRINUSE).
    "$PY" - "$1" <<'EOF'
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

# start_hdxd [-o KEY=VALUE ...]: starts hdxd on fresh ports with these overrides (later
# ones win), waits until it logs event=listening (10 s), and sets HDXD_PID, LOG, MLLP_PORT,
# SUB_PORT, HTTP_PORT, DICOM_PORT, LEGACY_PORT and DICOM_PLAIN_PORT (free; the last two are
# used only if the caller passes legacy.listen or dicom.plain_listen).
# In the arguments, @LEGACY@ becomes the new LEGACY_PORT (e.g. legacy.listen=127.0.0.1:@LEGACY@)
# and @DICOM_PLAIN@ the new DICOM_PLAIN_PORT.
# A second call starts a second daemon on the same $D (stop the first one before).
start_hdxd() {
    local ports i a args=()
    ports=$(free_ports 6)
    read -r MLLP_PORT SUB_PORT LEGACY_PORT HTTP_PORT DICOM_PORT DICOM_PLAIN_PORT <<<"$ports"
    for a in "$@"; do
        a=${a//@LEGACY@/$LEGACY_PORT}
        args+=("${a//@DICOM_PLAIN@/$DICOM_PLAIN_PORT}")
    done
    LOG=$T/hdxd.${#_HDXD_PIDS[@]}.log
    : >"$LOG"
    # Under AddressSanitizer a small quarantine keeps RSS meaningful for the memory bounds
    # these tests assert (freed memory is still checked for use after free while it is there).
    ASAN_OPTIONS="${ASAN_OPTIONS:+$ASAN_OPTIONS:}quarantine_size_mb=4" \
        "$HDXD" -c "$D/hdx.conf" -o "mllp.listen=127.0.0.1:$MLLP_PORT" \
        -o "sub.listen=127.0.0.1:$SUB_PORT" -o "http.listen=127.0.0.1:$HTTP_PORT" \
        -o "dicom.listen=127.0.0.1:$DICOM_PORT" ${args[@]+"${args[@]}"} 2>"$LOG" &
    HDXD_PID=$!
    _HDXD_PIDS+=("$HDXD_PID")
    for ((i = 0; i < 100; i++)); do
        grep -q 'event=listening' "$LOG" && return 0
        kill -0 "$HDXD_PID" 2>/dev/null || { cat "$LOG" >&2; fail "hdxd exited during start"; }
        sleep 0.1
    done
    fail "hdxd did not log event=listening within 10 s"
}

stop_hdxd() {
    [ -n "$HDXD_PID" ] || return 0
    kill -TERM "$HDXD_PID" 2>/dev/null || true
    local rc=0
    _wait_pid_gone "$HDXD_PID" 100 || { kill -KILL "$HDXD_PID"; fail "hdxd ignored SIGTERM for 10 s"; }
    wait "$HDXD_PID" 2>/dev/null || rc=$?
    HDXD_STATUS=$rc
    HDXD_PID=""
}

assert_hdxd_alive() {
    kill -0 "$HDXD_PID" 2>/dev/null || fail "hdxd (pid $HDXD_PID) died"
    ok
}

# wait_fds_le PID N SECONDS: waits (bounded) until PID has at most N open descriptors.
wait_fds_le() {
    local i
    for ((i = 0; i < $3 * 10; i++)); do
        [ "$(fd_count "$1")" -le "$2" ] && return 0
        sleep 0.1
    done
    return 0
}

rss_kb() { awk '/^VmRSS:/ {print $2}' "/proc/$1/status"; }
fd_count() { find "/proc/$1/fd" -mindepth 1 -maxdepth 1 | wc -l; }

# ---------- log ----------

# log_count ERE: number of hdxd log lines (current $LOG) matching ERE.
log_count() { grep -Ec -- "$1" "$LOG" || true; }

# wait_log ERE [TIMEOUT_S] [MIN_COUNT]: waits until at least MIN_COUNT (1) lines match.
wait_log() {
    local re=$1 tenths=$((${2:-5} * 10)) min=${3:-1} i
    for ((i = 0; i <= tenths; i++)); do
        [ "$(log_count "$re")" -ge "$min" ] && { ok; return 0; }
        sleep 0.1
    done
    fail "no ${min}x /$re/ in hdxd log within ${2:-5} s"
}

# assert_log_delta ERE BEFORE EXPECTED_DELTA WHAT: exact number of new matching lines.
assert_log_delta() {
    local now
    now=$(log_count "$1")
    assert_eq "$3" "$((now - $2))" "$4 (new log lines /$1/)"
}

# ---------- hdx CLI wrappers ----------

# dev_add NAME [hdx device add options]: enrols a device; sets CERT and KEY.
dev_add() {
    local name=$1 out
    shift
    out=$("$HDX" device add "$name" -d "$D" "$@") || fail "hdx device add $name failed"
    CERT=$(printf '%s\n' "$out" | sed -n 's/^cert=//p')
    KEY=$(printf '%s\n' "$out" | sed -n 's/^key=//p')
    if [ ! -f "$CERT" ] || [ ! -f "$KEY" ]; then fail "device add $name printed no cert/key: $out"; fi
}

records() { "$HDX" query -d "$D" --count; }
# admin_records: the admin records in the log (device enrolment, revocation, signing keys);
# they take seqs too, so tests that name seqs count from after them.
admin_records() { "$HDX" query -d "$D" --kind admin --count; }
# audit_records: the audit records in the log (kind audit, sender hdx:audit, docs/AUDIT.md):
# one per TLS authentication (each TLS connection whose certificate passed the handshake,
# admitted or refused), subscription start, refusal and end, and the disclosure summaries of
# a subscription. They take seqs too: the messages' seqs are not contiguous.
# The test's own reads of the store file (hdx query|get printing messages) are audit records
# too (action offline_read, docs/AUDIT.md): audit_records leaves them out, own_reads counts
# them, all_records counts everything.
audit_records() { echo $(($("$HDX" query -d "$D" --kind audit --count) - $(own_reads))); }
own_reads() {
    local out
    out=$("$HDX" audit query -d "$D" --event access --action offline_read) || fail "hdx audit query failed"
    if [ -z "$out" ]; then echo 0; else grep -c '^seq=' <<<"$out"; fi
}
# all_records: every record in the log, of any kind: what hdx verify counts (records=N), and
# the size of the tree a signed head covers once everything is committed.
all_records() { "$HDX" query -d "$D" --kind any --count; }
# audit_count [hdx audit query filters]: the audit records matching them (--event auth
# --outcome success --user NAME ...).
audit_count() {
    local out
    out=$("$HDX" audit query -d "$D" "$@") || fail "hdx audit query $* failed"
    if [ -z "$out" ]; then echo 0; else grep -c '^seq=' <<<"$out"; fi
}
# wait_audit_count N [hdx audit query filters]: an audit record is committed when hdxd sees
# the event (a connection admitted, refused or closed, a subscription ended), not when a
# client gets an answer: waits (bounded, 10 s) until at least N records match, then asserts
# exactly N do.
wait_audit_count() {
    local want=$1 i n
    shift
    for ((i = 0; i < 100; i++)); do
        n=$(audit_count "$@")
        [ "$n" -ge "$want" ] && break
        sleep 0.1
    done
    assert_eq "$want" "$n" "audit records${*:+ ($*)}"
}
# The helpers below read header lines only (hdx query --headers: seq, time, sender, type,
# MSH-10), which disclose no message and so leave no offline_read audit record: the tests'
# own instruments do not change the audit trail they check.
# first_msg_seq: the seq of the first message (HL7) record.
first_msg_seq() { "$HDX" query -d "$D" --headers | sed -n '1s/^# seq=\([0-9]*\) .*/\1/p'; }
# msg_seqs [hdx query filters]: the seqs of the messages (HL7) matching them, oldest first,
# space-separated: what a subscription with the same filter delivers.
msg_seqs() { "$HDX" query -d "$D" --headers "$@" | sed -n 's/^# seq=\([0-9]*\) .*/\1/p' | tr '\n' ' ' | sed 's/ $//'; }
# seq_of CTRL [hdx query filters]: the seq of the one message whose MSH-10 is CTRL (fails
# unless exactly one message matches).
seq_of() {
    local ctrl=$1 s
    shift
    s=$("$HDX" query -d "$D" --headers "$@" | awk -v c="$ctrl" '
        /^# seq=/ && $NF == "control_id=" c { sub(/^# seq=/, ""); sub(/ .*/, ""); print }') ||
        fail "seq_of $ctrl: hdx query failed"
    [ -n "$s" ] && [ "$(wc -l <<<"$s")" -eq 1 ] || fail "seq_of $ctrl: [$s] (wanted exactly one message)"
    printf '%s\n' "$s"
}

# hdx_send CERT KEY FILE...: hdx send to the running daemon; stdout in $OUT, status in $RC.
hdx_send() {
    local cert=$1 key=$2
    shift 2
    RC=0
    OUT=$("$HDX" send -d "$D" --cert "$cert" --key "$key" --to "127.0.0.1:$MLLP_PORT" \
        --timeout 10000 "$@" 2>"$T/send.err") || RC=$?
}

# pyc ARGS...: Debian python with hdxclient importable (inline scripts: pyc - ARGS <<'EOF').
pyc() { PYTHONPATH=$LIBDIR PYTHONDONTWRITEBYTECODE=1 "$PY" "$@"; }

# client ARGS...: the raw Python client (hdxclient.py) with --ca $D/ca.pem; output in $OUT.
client() {
    OUT=$("$PY" "$CLIENT" --ca "$D/ca.pem" "$@") || fail "hdxclient.py $* exited $?"
}

# hl7_file PATH CTRL [PATIENT] [NAME] [TYPE]: writes one CR-terminated message.
hl7_file() {
    local ctrl=$2 pat=${3:-PAT0001} name=${4:-TEST^PATIENT} type=${5:-ORU^R01}
    printf 'MSH|^~\\&|MON|WARD1|HDX|HOSP|20261125120000||%s|%s|P|2.5.1\rPID|1||%s^^^HOSP^MR||%s\rOBR|1|||8867-4^Heart rate^LN\rOBX|1|NM|8867-4^Heart rate^LN||72|/min|||||F\r' \
        "$type" "$ctrl" "$pat" "$name" >"$1"
}

# mk_cert PREFIX SUBJECT CA_CERT CA_KEY [EXTRA_EXT]: an EC P-256 client certificate signed by
# CA_CERT/CA_KEY (both "-" = a fresh self-signed CA of its own, written to PREFIX.ca.pem/.key
# first) -> PREFIX.pem, PREFIX.key. SUBJECT like /CN=mon-01/OU=device.
mk_cert() {
    local p=$1 subj=$2 ca=$3 cakey=$4 extra=${5:-}
    if [ "$ca" = - ]; then
        openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 30 \
            -subj "/CN=rogue CA" -keyout "$p.ca.key" -out "$p.ca.pem" \
            -addext basicConstraints=critical,CA:TRUE -addext keyUsage=critical,keyCertSign,cRLSign 2>/dev/null
        ca=$p.ca.pem cakey=$p.ca.key
    fi
    openssl req -new -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -subj "$subj" \
        -keyout "$p.key" -out "$p.csr" 2>/dev/null
    printf 'basicConstraints=critical,CA:FALSE\nkeyUsage=critical,digitalSignature\nextendedKeyUsage=clientAuth\nsubjectKeyIdentifier=hash\nauthorityKeyIdentifier=keyid\n%s\n' \
        "$extra" >"$p.ext"
    openssl x509 -req -in "$p.csr" -CA "$ca" -CAkey "$cakey" -CAcreateserial -days 30 \
        -extfile "$p.ext" -out "$p.pem" 2>/dev/null || fail "mk_cert $subj failed"
}

# ---------- store files (segments + index) ----------
# Record bodies live in DIR/segments/seg-%016x.hdx; store.db is the index (records.seg, .off).
# A frame at off: u32 "HDXF", u32 leaf_len (big-endian), leaf (HDXR header, nonce, u32 ct_len,
# ciphertext), 32-byte hash.

# seg_frame DIR SEQ: "SEGFILE OFF LEAF_LEN" of record SEQ's frame (fails if SEQ is not indexed).
seg_frame() {
    local row seg off f len
    row=$(sqlite3 "$1/store.db" "SELECT seg, off FROM records WHERE seq=$2") || fail "seg_frame: sql failed"
    [ -n "$row" ] || fail "seg_frame: no index row for seq $2"
    seg=${row%%|*} off=${row##*|}
    f=$(printf '%s/segments/seg-%016x.hdx' "$1" "$seg")
    [ -f "$f" ] || fail "seg_frame: $f missing"
    len=$("$PY" - "$f" "$off" <<'PYEOF'
import struct, sys
with open(sys.argv[1], "rb") as fh:
    fh.seek(int(sys.argv[2]))
    magic, n = struct.unpack(">4sI", fh.read(8))
if magic != b"HDXF":
    sys.exit("no frame magic at offset %s: %r" % (sys.argv[2], magic))
print(n)
PYEOF
) || fail "seg_frame: no frame for seq $2 at $f:$off"
    printf '%s %s %s\n' "$f" "$off" "$len"
}

# seg_flip_ct DIR SEQ: flips one byte of record SEQ's ciphertext in its segment file.
seg_flip_ct() {
    local fr f off len
    fr=$(seg_frame "$1" "$2") || fail "no frame for seq $2"
    read -r f off len <<<"$fr"
    "$PY" - "$f" "$((off + 8 + len - 5))" <<'PYEOF' || fail "seg_flip_ct: write failed"
import sys
with open(sys.argv[1], "r+b") as fh:
    fh.seek(int(sys.argv[2])); b = fh.read(1)
    fh.seek(int(sys.argv[2])); fh.write(bytes([b[0] ^ 0x01]))
PYEOF
}

# seg_cut DIR SEQ: removes records SEQ.. from the store for good: their index rows, their
# frames (zeroed from SEQ's frame to the end of its segment file) and any later segment file.
seg_cut() {
    local fr f off len g
    fr=$(seg_frame "$1" "$2") || fail "no frame for seq $2"
    read -r f off len <<<"$fr"
    "$PY" - "$f" "$off" <<'PYEOF' || fail "seg_cut: zeroing failed"
import os, sys
path, off = sys.argv[1], int(sys.argv[2])
size = os.path.getsize(path)
with open(path, "r+b") as fh:
    fh.seek(off)
    left = size - off
    while left > 0:
        n = min(left, 1 << 20); fh.write(b"\0" * n); left -= n
PYEOF
    for g in "$1"/segments/seg-*.hdx; do
        [[ "$g" > "$f" ]] && rm -f "$g"
    done
    sqlite3 "$1/store.db" "DELETE FROM records WHERE seq >= $2" || fail "seg_cut: sql failed"
}

# store_save DIR COPY: a copy of the whole store (index and segments), as a backup would take
# it (hdxd stopped). store_restore COPY DIR puts it back in place of DIR's store.
store_save() {
    rm -rf "$2"
    mkdir -p "$2"
    cp "$1/store.db" "$2/store.db"
    cp -r "$1/segments" "$2/segments"
}
store_restore() {
    rm -f "$2/store.db-wal" "$2/store.db-shm"
    rm -rf "$2/segments"
    cp "$1/store.db" "$2/store.db"
    cp -r "$1/segments" "$2/segments"
}

# ---------- outbound routes (docs/ROUTES.md; peers in route_peers/, see its README) ----------

PEERS=$LIBDIR/route_peers

# route_pki: the receivers' test PKI in $T/peers (pki.sh: ca, server, expired, wrongname,
# other-ca, otherca-server, client).
route_pki() {
    bash "$PEERS/install.sh" >/dev/null || fail "route_peers/install.sh failed"
    bash "$PEERS/pki.sh" "$T/peers" >/dev/null || fail "route_peers/pki.sh failed"
}

# start_ehr NAME [ehr.mjs options]: node-hl7-server 2.3.0 as an EHR on a free port; its
# records in $T/NAME.jsonl; sets EHR_PORT and EHR_PID (waits up to 10 s for it).
start_ehr() {
    local name=$1 i
    shift
    rm -f "$T/$name.port"
    node "$PEERS/ehr.mjs" --port "${EHR_FIXED_PORT:-0}" --ready "$T/$name.port" \
        --out "$T/$name.jsonl" "$@" >"$T/$name.out" 2>&1 &
    EHR_PID=$!
    _EXTRA_PIDS+=("$EHR_PID")
    for ((i = 0; i < 100; i++)); do
        [ -s "$T/$name.port" ] && { EHR_PORT=$(cat "$T/$name.port"); return 0; }
        kill -0 "$EHR_PID" 2>/dev/null || { cat "$T/$name.out" >&2; fail "ehr.mjs $name exited"; }
        sleep 0.1
    done
    fail "ehr.mjs $name not ready within 10 s"
}

stop_pid() {
    kill -TERM "$1" 2>/dev/null || true
    _wait_pid_gone "$1" 50 || kill -KILL "$1" 2>/dev/null || true
    wait "$1" 2>/dev/null || true
}

# add_route TEXT: appends a [route ...] section (or any text) to $D/hdx.conf.
add_route() { printf '\n%s\n' "$1" >>"$D/hdx.conf"; }

# jsonl_count FILE: records a receiver wrote (0 when none yet).
jsonl_count() { [ -f "$1" ] && wc -l <"$1" | tr -d ' ' || echo 0; }
# wait_jsonl FILE N SECONDS: until FILE holds at least N records.
wait_jsonl() {
    local i
    for ((i = 0; i < $3 * 10; i++)); do
        [ "$(jsonl_count "$1")" -ge "$2" ] && return 0
        sleep 0.1
    done
    fail "$1: $(jsonl_count "$1") records after $3 s, wanted $2"
}
# jsonl_field FILE KEY: that key of every record, one per line.
jsonl_field() {
    "$PY" -c 'import json,sys
for line in open(sys.argv[1]):
    v = json.loads(line).get(sys.argv[2]); print("" if v is None else v)' "$1" "$2"
}

# start_peer NAME SCRIPT [options]: a route_peers Python peer (broken_mllp.py, https_receiver.py)
# on a free port (--port P to choose); records in $T/NAME.jsonl; sets PEER_PORT and PEER_PID.
start_peer() {
    local name=$1 script=$2 i
    shift 2
    rm -f "$T/$name.port"
    "$PY" "$PEERS/$script" --ready "$T/$name.port" --out "$T/$name.jsonl" "$@" >"$T/$name.out" 2>&1 &
    PEER_PID=$!
    _EXTRA_PIDS+=("$PEER_PID")
    for ((i = 0; i < 100; i++)); do
        [ -s "$T/$name.port" ] && { PEER_PORT=$(cat "$T/$name.port"); return 0; }
        kill -0 "$PEER_PID" 2>/dev/null || { cat "$T/$name.out" >&2; fail "$script $name exited"; }
        sleep 0.1
    done
    fail "$script $name not ready within 10 s"
}

# route_status NAME: hdx route status (its exit status in $RC, output in $OUT)
route_status() { RC=0; OUT=$("$HDX" route status "$1" -d "$D" 2>&1) || RC=$?; }
# wait_route NAME ERE SECONDS: until hdx route status NAME matches ERE
wait_route() {
    local i
    for ((i = 0; i < $3 * 5; i++)); do
        route_status "$1"
        grep -Eq -- "$2" <<<"$OUT" && return 0
        sleep 0.2
    done
    fail "route $1: status never matched /$2/ in $3 s: $OUT"
}
# dead_count NAME: dead letters of the route
dead_count() { route_status "$1"; grep -c '^  seq=' <<<"$OUT" || true; }
