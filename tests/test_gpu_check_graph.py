"""scripts/gpu_check.sh verifies --cuda-graph on a GPU machine (docs/performance.md lists
what has not run on a GPU): the bitwise test, and training with the graph off and on."""
import shlex
from pathlib import Path

SCRIPT = (Path(__file__).parents[1] / "scripts" / "gpu_check.sh").read_text()


def commands() -> list[list[str]]:
    """The script's section commands (after `run TITLE LIMIT`), continuation lines joined."""
    joined = SCRIPT.replace("\\\n", " ")
    return [shlex.split(line.strip(), posix=True)[3:] for line in joined.splitlines()
            if line.strip().startswith("run \"")]


def test_the_graph_test_file_is_run_by_name_and_only_once():
    assert any(c[-1] == "tests/gpu/test_gpu_graph.py" for c in commands())
    assert (Path(__file__).parent / "gpu" / "test_gpu_graph.py").exists()
    (whole,) = [c for c in commands() if "tests/gpu" in c]         # the rest of tests/gpu
    assert "--ignore=tests/gpu/test_gpu_graph.py" in whole


def test_training_runs_with_the_graph_off_and_on_with_metrics():
    runs = [c for c in commands() if "--cuda-graph" in c and "train" in c]
    assert len(runs) == 1 and "for g in off on; do" in SCRIPT          # one section, two modes
    (run,) = runs
    assert run[run.index("--cuda-graph") + 1] == "$g" and "--metrics-out" in run


def test_the_bench_times_the_graph_off_and_on_next_to_pytorch():
    (bench,) = [c for c in commands() if "--cuda-graph" in c and "bench" in c]
    assert bench[bench.index("--cuda-graph") + 1] == "off,on" and "--device" in bench
    assert "--warmup" in bench and int(bench[bench.index("--warmup") + 1]) >= 2  # warm-up, capture
