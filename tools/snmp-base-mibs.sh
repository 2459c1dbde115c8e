#!/usr/bin/env bash
# The IETF base MIB modules (SNMPv2-SMI, -TC, -CONF, -MIB) that our MIB imports. Debian leaves
# them out of its packages (their licence), so smilint and net-snmp cannot load any SMIv2 MIB
# without them; the tests take them from the npm package net-snmp, which ships them, into
# $1 (default .venv/share/snmp-mibs). Nothing is fetched when they are there already.
set -euo pipefail
dest="${1:-.venv/share/snmp-mibs}"
modules=(SNMPv2-SMI SNMPv2-TC SNMPv2-CONF SNMPv2-MIB)
missing=0
for module in "${modules[@]}"; do [ -s "$dest/$module.txt" ] || missing=1; done
[ "$missing" -eq 0 ] && exit 0
command -v npm >/dev/null || { echo "npm is needed to fetch the IETF base MIBs" >&2; exit 1; }
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
(cd "$work" && npm pack --silent net-snmp@3.29.2 >/dev/null && tar xzf net-snmp-3.29.2.tgz)
mkdir -p "$dest"
for module in "${modules[@]}"; do
    cp "$work/package/lib/mibs/$module.mib" "$dest/$module.txt"
done
echo "IETF base MIBs in $dest"
