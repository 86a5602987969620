#!/bin/sh
# Install the real servers and tools the tests use, from Debian's packages, if missing.
# Without root (and no passwordless sudo) it says what is missing; the tests that need
# those servers then skip, except under CI=true, where they fail.
set -eu
need=""
command -v prometheus >/dev/null 2>&1 || need="$need prometheus"
command -v promtool >/dev/null 2>&1 || need="$need prometheus"
command -v prometheus-node-exporter >/dev/null 2>&1 || need="$need prometheus-node-exporter"
command -v prometheus-alertmanager >/dev/null 2>&1 || need="$need prometheus-alertmanager"
command -v nft >/dev/null 2>&1 || need="$need nftables"
command -v systemd-analyze >/dev/null 2>&1 || need="$need systemd"
command -v dpkg-deb >/dev/null 2>&1 || need="$need dpkg-dev"
command -v openssl >/dev/null 2>&1 || need="$need openssl"
[ -x /usr/bin/python3 ] || need="$need python3 python3-venv"
command -v ip >/dev/null 2>&1 || need="$need iproute2"
command -v cc >/dev/null 2>&1 || need="$need gcc libc6-dev"        # the NVML stand-in
[ -f /usr/include/cjson/cJSON.h ] || need="$need libcjson-dev"
[ -z "$need" ] && exit 0
if [ "$(id -u)" -eq 0 ]; then sudo=""; elif sudo -n true 2>/dev/null; then sudo="sudo -n"; else
  echo "install-servers: not root; missing Debian packages:$need" >&2
  exit 0
fi
export DEBIAN_FRONTEND=noninteractive
$sudo apt-get update -qq
# shellcheck disable=SC2086
$sudo apt-get install -y -qq --no-install-recommends $need >/dev/null
echo "install-servers: installed$need"
