#!/usr/bin/env bash
# Run dptrain on this machine with N MPI ranks.
#
#   launch/mpirun.sh -n 4 --model thesis-cnn --dataset mnist5k --epochs 5
#
# Each rank gets (cores / ranks) BLAS/OpenMP threads, so ranks do not oversubscribe the node,
# and is bound to its cores when the MPI library supports binding (MPICH's hydra or Open MPI).
# Environment: MPIEXEC, DPTRAIN (the commands; default: on PATH, else the project's .venv/bin),
# THREADS (override the threads per rank). Everything after -n N goes to `dptrain train`.
set -euo pipefail

die() { echo "mpirun.sh: error: $*" >&2; exit 2; }
venv_bin="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)/.venv/bin"
# a command from the environment, PATH, or the project's virtual environment
find_tool() {
    local name=$1 given=$2
    if [[ -n "$given" ]]; then command -v "$given" || die "$name '$given' not found"; return; fi
    command -v "$name" || { [[ -x "$venv_bin/$name" ]] && echo "$venv_bin/$name"; } ||
        die "$name not found on PATH nor in $venv_bin (run make demo, or set ${name^^})"
}

[[ "${1:-}" == "-n" ]] || die "usage: mpirun.sh -n RANKS [dptrain train flags...]"
[[ "${2:-}" =~ ^[1-9][0-9]*$ ]] || die "-n needs a positive whole number of ranks, got '${2:-}'"
ranks=$2
shift 2
[[ -z "${THREADS:-}" || "$THREADS" =~ ^[1-9][0-9]*$ ]] ||
    die "THREADS must be a positive whole number, got '$THREADS'"
mpiexec=$(find_tool mpiexec "${MPIEXEC:-}")
dptrain=$(find_tool dptrain "${DPTRAIN:-}")
cores=$(nproc)
threads=${THREADS:-$(( cores / ranks > 0 ? cores / ranks : 1 ))}
export OMP_NUM_THREADS=$threads OPENBLAS_NUM_THREADS=$threads MKL_NUM_THREADS=$threads

bind=()
version=$("$mpiexec" --version 2>&1 || true)
if (( ranks <= cores )); then             # binding only makes sense without oversubscription
    case "$version" in
        *HYDRA*)   bind=(-bind-to core:"$threads") ;;
        *"Open MPI"*|*OpenRTE*) bind=(--bind-to core --map-by "slot:PE=$threads") ;;
    esac
fi

exec "$mpiexec" "${bind[@]}" -n "$ranks" "$dptrain" train --threads "$threads" "$@"
