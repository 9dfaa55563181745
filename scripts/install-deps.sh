#!/usr/bin/env bash
# install-deps.sh - install the Debian packages this project needs to build, test and demo.
#
# Usage: scripts/install-deps.sh [EXTRA_PACKAGE ...]
#
# Idempotent: asks dpkg-query which packages are missing and installs only those, so a
# machine that already has everything is not touched (no apt-get update, no network).
# Works without a terminal (CI=true, no stdin). Extra package names given as arguments are
# added to the base list, so other scripts can ask for valgrind, clang, postgresql, ...
set -euo pipefail

BASE_PACKAGES=(
    build-essential cmake pkg-config
    libpaho-mqtt-dev mosquitto mosquitto-clients
    libsqlite3-dev sqlite3 libcbor-dev libmbedtls-dev libpq-dev
    libssl-dev openssl ca-certificates procps
)

die() {
    echo "install-deps: error: $*" >&2
    exit 1
}

command -v dpkg-query >/dev/null 2>&1 ||
    die "dpkg-query not found: this script supports Debian/Ubuntu (apt) only."

for p in "$@"; do
    # A package name is lowercase letters, digits and + - . ; anything else is a typo or an option.
    [[ "$p" =~ ^[a-z0-9][a-z0-9+.-]+$ ]] || die "not a Debian package name: '$p'"
done

# Node.js and npm build the live dashboard (cloud/dashboard) and run its browser test. Any node
# on PATH will do (it may come from elsewhere than Debian); only without one are Debian's
# asked for, since installing them beside another node would conflict.
NODE_PACKAGES=()
if ! command -v node >/dev/null 2>&1 || ! command -v npm >/dev/null 2>&1; then
    NODE_PACKAGES=(nodejs npm)
fi

missing=()
for p in "${BASE_PACKAGES[@]}" "${NODE_PACKAGES[@]}" "$@"; do
    # "install ok installed" is the only state that means the package is fully there;
    # removed-but-configured or half-installed packages count as missing.
    status=$(dpkg-query -W -f='${Status}' "$p" 2>/dev/null || true)
    if [[ "$status" != "install ok installed" ]]; then
        # Avoid listing a package twice when a caller repeats a base package.
        case " ${missing[*]-} " in *" $p "*) ;; *) missing+=("$p") ;; esac
    fi
done

if ((${#missing[@]} == 0)); then
    echo "install-deps: nothing missing"
    exit 0
fi

if [[ $(id -u) -ne 0 ]]; then
    die "missing packages: ${missing[*]}
run as root:  sudo apt-get update && sudo apt-get install -y --no-install-recommends ${missing[*]}"
fi

export DEBIAN_FRONTEND=noninteractive
# stdin from /dev/null: apt and dpkg maintainer scripts must never wait for an answer.
apt-get update </dev/null ||
    die "apt-get update failed (no network or a broken sources list?)"
apt-get install -y --no-install-recommends "${missing[@]}" </dev/null ||
    die "apt-get install failed for: ${missing[*]}"

echo "install-deps: installed ${missing[*]}"
