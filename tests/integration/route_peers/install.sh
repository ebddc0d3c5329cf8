#!/usr/bin/env bash
# Installs node-hl7-server 2.3.0 (pinned, package-lock.json) into route_peers/node_modules,
# idempotently: npm runs only when that version is not there, apt-get only when node/npm are missing.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")"

if ! command -v node >/dev/null || ! command -v npm >/dev/null; then
  SUDO=""
  if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi
  echo "route_peers/install.sh: installing nodejs npm" >&2
  export DEBIAN_FRONTEND=noninteractive
  $SUDO apt-get update -qq
  $SUDO apt-get install -y -qq --no-install-recommends nodejs npm >/dev/null
fi

have=$(node -p 'try { require("./node_modules/node-hl7-server/package.json").version } catch (e) { "" }')
if [ "$have" != "2.3.0" ]; then
  echo "route_peers/install.sh: npm install (node-hl7-server ${have:-missing} -> 2.3.0)" >&2
  npm install --no-audit --no-fund >&2
fi
