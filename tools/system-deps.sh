#!/usr/bin/env bash
# Installs the Debian packages the test suite drives (independent clients and servers) when missing.
set -euo pipefail
needed=()
while read -r cmd pkg; do
    case "$cmd" in ""|\#*) continue ;; esac
    command -v "$cmd" >/dev/null 2>&1 || needed+=("$pkg")
done < tools/system-deps.txt
[ ${#needed[@]} -eq 0 ] && exit 0
if [ "$(id -u)" -ne 0 ]; then
    echo "missing system packages: ${needed[*]} (as root: apt-get install ${needed[*]})" >&2
    exit 1
fi
echo "installing system packages: ${needed[*]}"
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends "${needed[@]}" >/dev/null
