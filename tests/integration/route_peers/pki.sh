#!/usr/bin/env bash
# pki.sh DIR: a test PKI for the route peers, made with the openssl CLI (keys 0600, idempotent:
# every file that exists is kept).
#   ca.pem/.key            test CA ("hdx-route-test-ca")
#   server.pem/.key        receiver cert: SAN DNS:localhost, IP:127.0.0.1, serverAuth
#   expired.pem/.key       same SAN, serverAuth, validity ended in the past
#   wrongname.pem/.key     SAN DNS:wrong.example only
#   other-ca.pem/.key      a second, unrelated CA; otherca-server.pem/.key: localhost cert from it
#   client.pem/.key        CN=hdx-route, clientAuth (what hdxd presents)
set -euo pipefail
D=${1:?usage: pki.sh DIR}
mkdir -p "$D"
cd "$D"
umask 077

key() { [ -f "$1.key" ] || openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$1.key" 2>/dev/null; chmod 600 "$1.key"; }

ca() { # NAME CN
    key "$1"
    [ -f "$1.pem" ] || openssl req -x509 -new -key "$1.key" -subj "/CN=$2" -days 3650 -out "$1.pem" \
        -addext basicConstraints=critical,CA:TRUE -addext keyUsage=critical,keyCertSign,cRLSign
}

# leaf NAME CA CN EKU SAN [DAYS|expired]
leaf() {
    [ -f "$1.pem" ] && return 0
    key "$1"
    local ext=$1.ext
    printf 'basicConstraints=CA:FALSE\nkeyUsage=critical,digitalSignature\nextendedKeyUsage=%s\n' "$4" >"$ext"
    [ -n "$5" ] && printf 'subjectAltName=%s\n' "$5" >>"$ext"
    openssl req -new -key "$1.key" -subj "/CN=$3" -out "$1.csr"
    if [ "${6:-}" = expired ]; then
        # openssl x509 cannot back-date; openssl ca can (-startdate/-enddate).
        mkdir -p "$1.db" && : >"$1.db/index" && echo 01 >"$1.db/serial"
        printf '[ca]\ndefault_ca=c\n[c]\ndatabase=%s/index\nserial=%s/serial\nnew_certs_dir=%s\ndefault_md=sha256\npolicy=p\n[p]\ncommonName=supplied\n' \
            "$1.db" "$1.db" "$1.db" >"$1.db/ca.cnf"
        openssl ca -batch -config "$1.db/ca.cnf" -cert "$2.pem" -keyfile "$2.key" -in "$1.csr" -out "$1.pem" \
            -startdate 20200101000000Z -enddate 20200201000000Z -extfile "$ext" -notext 2>/dev/null
        rm -rf "$1.db"
    else
        openssl x509 -req -in "$1.csr" -CA "$2.pem" -CAkey "$2.key" -CAcreateserial -days "${6:-825}" \
            -extfile "$ext" -out "$1.pem" 2>/dev/null
    fi
    rm -f "$1.csr" "$ext"
}

ca ca hdx-route-test-ca
ca other-ca hdx-route-other-ca
leaf server ca localhost serverAuth 'DNS:localhost,IP:127.0.0.1'
leaf expired ca localhost serverAuth 'DNS:localhost,IP:127.0.0.1' expired
leaf wrongname ca wrong.example serverAuth 'DNS:wrong.example'
leaf otherca-server other-ca localhost serverAuth 'DNS:localhost,IP:127.0.0.1'
leaf client ca hdx-route clientAuth ''
chmod 644 ./*.pem
