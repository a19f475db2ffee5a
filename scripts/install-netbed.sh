#!/usr/bin/env bash
# System packages for the multi-node test bed (tests/netbed, docs/testbed.md): iproute2 (ip,
# tc), util-linux (unshare), iptables (loss and delay: this kernel has no netem) and gcc (the
# delayer, tests/netbed/nfq_delay.c). Run by CI (.ci/run); never by `make test`, which installs
# nothing outside the project and skips the bed's tests with a reason instead. Needs root and
# apt-get; does nothing when everything is there.
set -euo pipefail
missing=()
for tool in ip:iproute2 tc:iproute2 unshare:util-linux iptables:iptables gcc:gcc; do
    command -v "${tool%%:*}" >/dev/null || missing+=("${tool#*:}")
done
[ ${#missing[@]} = 0 ] && exit 0
if [ "$(id -u)" != 0 ] || ! command -v apt-get >/dev/null; then
    echo "install-netbed.sh: installing ${missing[*]} needs root and apt-get" >&2
    exit 1
fi
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq $(printf '%s\n' "${missing[@]}" | sort -u)
