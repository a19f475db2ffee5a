#!/usr/bin/env bash
# PBS Pro / Torque job script: one MPI rank per mpiproc in the allocation.
#
#   qsub -l select=2:ncpus=8:mpiprocs=2 -v DPTRAIN_ARGS="--model thesis-cnn --epochs 5" launch/pbs.sh
#
# Ranks = lines of $PBS_NODEFILE; threads per rank = NCPUS / ranks per node (ncpus / mpiprocs).
# PBS passes no script arguments: put dptrain's flags in DPTRAIN_ARGS.
# Environment: MPIEXEC, DPTRAIN (commands to use), DPTRAIN_ARGS (flags for `dptrain train`).
#PBS -N dptrain
#PBS -l select=1:ncpus=2:mpiprocs=2
#PBS -j oe
set -euo pipefail

cd "${PBS_O_WORKDIR:-.}"
nodefile=${PBS_NODEFILE:?launch/pbs.sh runs inside a PBS job}
ranks=$(wc -l < "$nodefile")
per_node=$(sort "$nodefile" | uniq -c | awk 'NR == 1 {print $1}')
threads=$(( ${NCPUS:-$per_node} / per_node > 0 ? ${NCPUS:-$per_node} / per_node : 1 ))
export OMP_NUM_THREADS=$threads OPENBLAS_NUM_THREADS=$threads MKL_NUM_THREADS=$threads
mpiexec=${MPIEXEC:-mpiexec}

hostfile=(-f "$nodefile")                       # MPICH's hydra
if "$mpiexec" --version 2>&1 | grep -q "Open MPI"; then
    hostfile=(--hostfile "$nodefile")
fi
# shellcheck disable=SC2086  # DPTRAIN_ARGS is a list of flags
exec "$mpiexec" "${hostfile[@]}" -n "$ranks" "${DPTRAIN:-dptrain}" train --threads "$threads" ${DPTRAIN_ARGS:-}
