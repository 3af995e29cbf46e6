#!/usr/bin/env bash
# Installs everything the project needs on a Debian 12 machine; fast when already done.
set -euo pipefail
cd "$(dirname "$0")/.."

APT_PKGS="golang-go golang-github-vmware-govmomi-dev bind9 bind9-utils postgresql python3-venv chromium chromium-driver libpango-1.0-0 libpangoft2-1.0-0 poppler-utils"
missing=()
for p in $APT_PKGS; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  SUDO=""
  [ "$(id -u)" -ne 0 ] && SUDO=sudo
  echo "bootstrap: installing Debian packages: ${missing[*]}"
  $SUDO apt-get update -qq
  $SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

PY=${PYTHON:-python3.11}
command -v "$PY" >/dev/null || PY=python3
if [ ! -x .venv/bin/python ]; then
  echo "bootstrap: creating .venv"
  "$PY" -m venv .venv
fi
if [ ! -f .venv/.installed ] || [ pyproject.toml -nt .venv/.installed ]; then
  echo "bootstrap: installing the package and its dependencies"
  .venv/bin/pip install -q --upgrade pip >/dev/null
  .venv/bin/pip install -q -e ".[dev]"
  touch .venv/.installed
fi

# vcsim: VMware's simulator built from Debian's govmomi sources with our small main.
if [ ! -x build/vcsim ] || [ lab/vcsim/main.go -nt build/vcsim ]; then
  echo "bootstrap: building vcsim (about 20 s)"
  mkdir -p build
  GOPATH=/usr/share/gocode GO111MODULE=off go build -o build/vcsim ./lab/vcsim/main.go
fi
