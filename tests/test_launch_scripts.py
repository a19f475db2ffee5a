"""launch/ scripts outside a real cluster: argument checks, and what they hand to the
launcher under stand-in Slurm and PBS environments (a recording fake mpiexec/srun on PATH).
The real Slurm run is tests/test_slurm.py."""
import os
import subprocess
from pathlib import Path

import pytest

LAUNCH = Path(__file__).resolve().parent.parent / "launch"
RECORDER = """#!/usr/bin/env bash
{{ echo "$(basename "$0") $*"; echo "SRUN_CPUS_PER_TASK=${{SRUN_CPUS_PER_TASK:-}}";
  echo "OMP_NUM_THREADS=${{OMP_NUM_THREADS:-}}"; }} >> "{log}"
"""


@pytest.fixture
def fakes(tmp_path):
    """A directory with recording mpiexec, srun and dptrain; returns (dir, log file)."""
    bindir, log = tmp_path / "fakebin", tmp_path / "calls.log"
    bindir.mkdir()
    for name in ("mpiexec", "srun", "dptrain"):
        (bindir / name).write_text(RECORDER.format(log=log))
        (bindir / name).chmod(0o755)
    return bindir, log


def launched(log) -> str:
    """The launcher's command line (probes such as `mpiexec --version` left out)."""
    calls = [c for c in log.read_text().splitlines()
             if c.split(" ")[0] in ("mpiexec", "srun") and not c.endswith("--version")]
    assert len(calls) == 1, calls
    return calls[0]


def run(script, *args, env=None, path=None):
    base = {"PATH": f"{path}:/usr/bin:/bin" if path else "/usr/bin:/bin", "HOME": os.environ["HOME"]}
    return subprocess.run(["bash", str(LAUNCH / script), *map(str, args)], capture_output=True,
                          text=True, env={**base, **(env or {})}, timeout=30)


def one_line_error(res, *fragments):
    assert res.returncode == 2, (res.stdout, res.stderr)
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1 and "error:" in lines[0], res.stderr
    for f in fragments:
        assert f in lines[0], (f, lines[0])


@pytest.mark.parametrize("ranks", ["0", "two", "-3", ""])
def test_mpirun_rejects_a_bad_rank_count(ranks):
    one_line_error(run("mpirun.sh", "-n", ranks), "-n needs a positive whole number", f"'{ranks}'")


def test_mpirun_without_mpiexec_says_where_it_looked(tmp_path):
    one_line_error(run("mpirun.sh", "-n", "2", env={"MPIEXEC": str(tmp_path / "none")}),
                   "not found")


def test_mpirun_passes_ranks_threads_and_flags(fakes):
    bindir, log = fakes
    res = run("mpirun.sh", "-n", 2, "--augment", "crop,flip", path=bindir, env={"THREADS": "3"})
    assert res.returncode == 0, res.stderr
    first = launched(log)
    assert first.startswith("mpiexec ") and "-n 2" in first
    assert first.endswith("dptrain train --threads 3 --augment crop,flip"), first


def test_slurm_script_outside_slurm_is_one_line():
    one_line_error(run("slurm.sbatch"), "not inside a Slurm job")


def test_srun_gets_the_cpus_per_task(fakes):
    bindir, log = fakes
    env = {"SLURM_JOB_ID": "7", "SLURM_NTASKS": "4", "SLURM_CPUS_PER_TASK": "3",
           "DPTRAIN_LAUNCHER": "srun"}
    res = run("slurm.sbatch", "--epochs", 2, path=bindir, env=env)
    assert res.returncode == 0, res.stderr
    assert launched(log) == "srun --mpi=pmi2 --cpus-per-task 3 dptrain train --threads 3 --epochs 2"
    calls = log.read_text().splitlines()
    assert "SRUN_CPUS_PER_TASK=3" in calls and "OMP_NUM_THREADS=3" in calls


def test_slurm_rejects_an_unknown_launcher(fakes):
    env = {"SLURM_JOB_ID": "7", "SLURM_NTASKS": "2", "DPTRAIN_LAUNCHER": "aprun"}
    one_line_error(run("slurm.sbatch", path=fakes[0], env=env), "DPTRAIN_LAUNCHER", "aprun")


def nodefile(tmp_path, nodes, per_node):
    f = tmp_path / "nodes"
    f.write_text("".join(f"node{n}\n" * per_node for n in range(nodes)))
    return f


def test_pbs_script_outside_pbs_is_one_line():
    one_line_error(run("pbs.sh"), "not inside a PBS job")


def test_pbs_pro_threads_from_ncpus_and_path_from_the_submitter(tmp_path, fakes):
    bindir, log = fakes
    env = {"PBS_NODEFILE": str(nodefile(tmp_path, 2, 2)), "NCPUS": "8", "PBS_O_PATH": str(bindir),
           "PBS_O_WORKDIR": str(tmp_path), "DPTRAIN_ARGS": "--model mlp --epochs 2"}
    res = run("pbs.sh", env=env)                 # the fakes are on PBS_O_PATH only
    assert res.returncode == 0, res.stderr
    first = launched(log)
    assert first == f"mpiexec -f {env['PBS_NODEFILE']} -n 4 dptrain train --threads 4 --model mlp --epochs 2"


def test_torque_one_thread_per_nodefile_line_and_args_with_commas(tmp_path, fakes):
    bindir, log = fakes
    args = tmp_path / "args.txt"
    args.write_text("--augment\ncrop,flip\n\n--dataset\nsynthetic:1x8x8:64\n")
    env = {"PBS_NODEFILE": str(nodefile(tmp_path, 1, 3)), "DPTRAIN_ARGS_FILE": str(args),
           "PBS_O_WORKDIR": str(tmp_path)}
    res = run("pbs.sh", env=env, path=bindir)
    assert res.returncode == 0, res.stderr
    first = launched(log)
    assert first.endswith("-n 3 dptrain train --threads 1 --augment crop,flip --dataset "
                          "synthetic:1x8x8:64"), first


def test_pbs_rejects_bad_threads(tmp_path, fakes):
    env = {"PBS_NODEFILE": str(nodefile(tmp_path, 1, 2)), "THREADS": "many"}
    one_line_error(run("pbs.sh", env=env, path=fakes[0]), "THREADS", "many")
