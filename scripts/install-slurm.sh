#!/usr/bin/env bash
# System packages for the single-node Slurm test (tests/test_slurm.py): Debian's slurm-wlm and
# munge. Run by `make test-slurm` and by CI (.ci/run); never by `make test`, which installs
# nothing outside the project. Needs root and apt-get; does nothing when Slurm is already there.
set -euo pipefail
if command -v slurmctld >/dev/null && command -v slurmd >/dev/null \
        && command -v munged >/dev/null && command -v sbatch >/dev/null; then
    exit 0
fi
if [ "$(id -u)" != 0 ] || ! command -v apt-get >/dev/null; then
    echo "install-slurm.sh: installing slurm-wlm and munge needs root and apt-get" >&2
    exit 1
fi
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq slurm-wlm munge
