#!/usr/bin/env bash
# PBS Pro / Torque job script: one MPI rank per line of $PBS_NODEFILE.
#
#   PBS Pro: qsub -l select=2:ncpus=8:mpiprocs=2 launch/pbs.sh
#   Torque:  qsub -l nodes=2:ppn=2 launch/pbs.sh
#
# Resources are given to qsub, not written here: PBS Pro's `select` and Torque's `nodes`
# syntaxes reject each other. Threads per rank: PBS Pro sets NCPUS (ncpus of a chunk), shared
# by its mpiprocs ranks; Torque gives one nodefile line per core, so 1; THREADS overrides.
# dptrain's flags (PBS passes scripts no arguments), in one of two ways, neither of which
# splits on commas as `qsub -v` does:
#   export DPTRAIN_ARGS="--model thesis-cnn --augment crop,flip"; qsub -V ... launch/pbs.sh
#   qsub -v DPTRAIN_ARGS_FILE=$PWD/args.txt ... launch/pbs.sh    (one flag or value per line)
# The job's PATH is the submitter's (PBS_O_PATH) first, so `dptrain` and `mpiexec` resolve as
# they did at submission; MPIEXEC and DPTRAIN name them explicitly.
#PBS -N dptrain
#PBS -j oe
set -euo pipefail

die() { echo "pbs.sh: error: $*" >&2; exit 2; }
[[ -n "${PBS_NODEFILE:-}" ]] || die "not inside a PBS job: submit it with qsub (see the top of launch/pbs.sh)"
[[ -r "$PBS_NODEFILE" ]] || die "PBS_NODEFILE $PBS_NODEFILE is not readable"
export PATH="${PBS_O_PATH:+$PBS_O_PATH:}$PATH"
cd "${PBS_O_WORKDIR:-.}"

args=()
if [[ -n "${DPTRAIN_ARGS_FILE:-}" ]]; then
    [[ -r "$DPTRAIN_ARGS_FILE" ]] || die "DPTRAIN_ARGS_FILE $DPTRAIN_ARGS_FILE is not readable"
    mapfile -t args < <(grep -v '^[[:space:]]*$' "$DPTRAIN_ARGS_FILE")   # read, never run
fi
if [[ -n "${DPTRAIN_ARGS:-}" ]]; then
    read -r -a more <<< "$DPTRAIN_ARGS"       # split on spaces only
    args+=("${more[@]}")
fi

ranks=$(wc -l < "$PBS_NODEFILE")
(( ranks > 0 )) || die "PBS_NODEFILE $PBS_NODEFILE is empty"
per_node=$(sort "$PBS_NODEFILE" | uniq -c | awk 'NR == 1 {print $1}')
if [[ -n "${THREADS:-}" ]]; then
    [[ "$THREADS" =~ ^[1-9][0-9]*$ ]] || die "THREADS must be a positive whole number, got '$THREADS'"
    threads=$THREADS
elif [[ -n "${NCPUS:-}" ]]; then              # PBS Pro
    threads=$(( NCPUS / per_node > 0 ? NCPUS / per_node : 1 ))
else                                          # Torque: a nodefile line per core
    threads=1
fi
export OMP_NUM_THREADS=$threads OPENBLAS_NUM_THREADS=$threads MKL_NUM_THREADS=$threads
mpiexec=${MPIEXEC:-mpiexec}
dptrain=${DPTRAIN:-dptrain}
for tool in "$mpiexec" "$dptrain"; do
    command -v "$tool" > /dev/null || die "$tool not found on the job's PATH (set MPIEXEC / DPTRAIN)"
done

hostfile=(-f "$PBS_NODEFILE")                   # MPICH's hydra
if "$mpiexec" --version 2>&1 | grep -q "Open MPI"; then
    hostfile=(--hostfile "$PBS_NODEFILE")
fi
echo "dptrain job ${PBS_JOBID:-?}: $ranks ranks x $threads threads"
exec "$mpiexec" "${hostfile[@]}" -n "$ranks" "$dptrain" train --threads "$threads" "${args[@]}"
