#!/bin/sh
# Installs nmc's build and test dependencies; idempotent.
#   Debian packages: deps/apt.txt (one per line, # comments)
#   PyPI packages:   deps/pip.txt (requirements format; test oracles and tools)
set -e
cd "$(dirname "$0")"
pkgs=$(sed 's/#.*//' apt.txt | tr -s ' \n' ' ')
missing=""
for p in $pkgs; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing="$missing $p"
done
if [ -n "$missing" ]; then
  SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO=sudo
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq $missing
fi
python3 -m pip install -q --disable-pip-version-check -r pip.txt
