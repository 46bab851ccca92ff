#!/usr/bin/env bash
# System packages the tests drive, installed when missing: Debian's Chromium (browser tests
# through Playwright; never a browser download) and a PostgreSQL server (the Postgres-backed
# Dagster instance test). Needs root or sudo the first time; does nothing once they are there.
set -euo pipefail
if command -v chromium >/dev/null && ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1; then
    exit 0
fi
SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO="sudo"
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -q
$SUDO apt-get install -y -q --no-install-recommends chromium postgresql
