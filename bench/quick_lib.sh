# Sourced by bench/pair.sh and bench/steady.sh (not run by itself): the two servers they put
# side by side, each on a fresh data directory made by $bin/hdx init, on loopback ports.
#   start_ackserver DIR MAX_SECONDS   the ACK-only server; sets apid and ap (its port)
#   start_hdxd DIR                    hdxd, MLLP and sub only; sets hpid and hp (MLLP port)
# Both return once the server logged event=listening (10 s at most).
fp() { /usr/bin/python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
waitl() { for _ in $(seq 200); do grep -q event=listening "$1" 2>/dev/null && return 0; sleep 0.05; done; return 1; }
start_ackserver() {
  "$bin/hdx" init "$1" >/dev/null
  ap=$(fp)
  "$bin/ackserver" -c "$1/hdx.conf" -l "127.0.0.1:$ap" -t "$2" 2>"$1/a.log" &
  apid=$!
  waitl "$1/a.log"
}
start_hdxd() {
  "$bin/hdx" init "$1" >/dev/null
  hp=$(fp)
  local sp
  sp=$(fp)
  "$bin/hdxd" -c "$1/hdx.conf" -o "mllp.listen=127.0.0.1:$hp" -o "sub.listen=127.0.0.1:$sp" \
    -o http.listen= -o dicom.listen= 2>"$1/d.log" &
  hpid=$!
  waitl "$1/d.log"
}
