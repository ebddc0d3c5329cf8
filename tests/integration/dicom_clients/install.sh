#!/usr/bin/env bash
# Installs the pinned DICOM client (dcmjs-dimse) (package.json, package-lock.json) into
# dicom_clients/node_modules, idempotently: npm runs only when one of the pinned versions is
# not there, apt-get only when node/npm are missing.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")"

if ! command -v node >/dev/null || ! command -v npm >/dev/null; then
  SUDO=""
  if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi
  echo "dicom_clients/install.sh: installing nodejs npm" >&2
  export DEBIAN_FRONTEND=noninteractive
  $SUDO apt-get update -qq
  $SUDO apt-get install -y -qq --no-install-recommends nodejs npm >/dev/null
fi

# prints the pinned packages whose installed version is not the one package.json names
missing=$(node -e '
  const deps = require("./package.json").dependencies;
  for (const [name, want] of Object.entries(deps)) {
    let have = "";
    try { have = require("./node_modules/" + name + "/package.json").version; } catch (e) {}
    if (have !== want) console.log(name + "@" + (have || "missing") + "->" + want);
  }')
if [ -n "$missing" ]; then
  echo "dicom_clients/install.sh: npm install ($(tr "\n" " " <<<"$missing"))" >&2
  npm install --no-audit --no-fund >&2
fi
