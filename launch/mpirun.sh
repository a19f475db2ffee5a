#!/usr/bin/env bash
# Run dptrain on this machine with N MPI ranks.
#
#   launch/mpirun.sh -n 4 --model thesis-cnn --dataset mnist5k --epochs 5
#
# Each rank gets (cores / ranks) BLAS/OpenMP threads, so ranks do not oversubscribe the node,
# and is bound to its cores when the MPI library supports binding (MPICH's hydra or Open MPI).
# Environment: MPIEXEC (default: mpiexec on PATH), DPTRAIN (default: dptrain on PATH),
# THREADS (override the threads per rank). Everything after -n N goes to `dptrain train`.
set -euo pipefail

if [[ "${1:-}" != "-n" || -z "${2:-}" ]]; then
    echo "usage: $0 -n RANKS [dptrain train flags...]" >&2
    exit 2
fi
ranks=$2
shift 2
mpiexec=${MPIEXEC:-mpiexec}
dptrain=${DPTRAIN:-dptrain}
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
