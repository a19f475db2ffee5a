"""The dptrain command end to end: training accuracy, eval, summary, bench, plot, and bad input."""
import importlib.util
import json
import subprocess
import sys

import numpy as np
import pytest

from data.test_readers import make_mnist_dir, write_idx


def dptrain(*args, timeout=600):
    return subprocess.run([sys.executable, "-m", "dptrain.cli", *map(str, args)],
                          capture_output=True, text=True, timeout=timeout)


def assert_usage_error(res, *fragments):
    """Exit 2, exactly one line on stderr starting 'dptrain: error:', naming the culprit."""
    assert res.returncode == 2, (res.returncode, res.stderr)
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("dptrain: error: "), res.stderr
    assert "Traceback" not in res.stderr
    for frag in fragments:
        assert frag in lines[0], (frag, lines[0])


@pytest.mark.slow
def test_thesis_cnn_on_mnist5k_reaches_95_percent(tmp_path):
    metrics, weights = tmp_path / "m.jsonl", tmp_path / "w.npz"
    res = dptrain("train", "--model", "thesis-cnn", "--dataset", "mnist5k", "--epochs", 2,
                  "--metrics-out", metrics, "--save-weights", weights)
    assert res.returncode == 0, res.stderr
    lines = [json.loads(line) for line in metrics.read_text().splitlines()]
    test_lines = [r for r in lines if r.get("split") == "test"]
    assert [r["epoch"] for r in test_lines] == [1, 2]
    assert test_lines[-1]["accuracy"] >= 0.95
    train_line = next(r for r in lines if r["type"] == "epoch")
    assert {"epoch", "step", "loss", "accuracy", "lr", "samples_per_s", "time_s"} <= set(train_line)
    assert "test accuracy: " in res.stdout
    # the saved weights give the same accuracy through `dptrain eval`
    ev = dptrain("eval", "--model", "thesis-cnn", "--weights", weights, "--json")
    assert ev.returncode == 0, ev.stderr
    assert json.loads(ev.stdout)["accuracy"] == pytest.approx(test_lines[-1]["accuracy"])
    with np.load(weights) as z:
        assert "0.W" in z.files and "1.running_var" in z.files
    png = tmp_path / "m.png"
    pl = dptrain("plot", metrics, "-o", png)
    assert pl.returncode == 0, pl.stderr
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_config_file_and_flags_override(tmp_path):
    cfg = tmp_path / "c.toml"
    cfg.write_text('model = "mlp"\ndataset = "synthetic:1x8x8:200"\nepochs = 3\nbatch-size = 50\n'
                   'max_steps = 2\noptimizer = "adam"\n')
    metrics = tmp_path / "m.jsonl"
    res = dptrain("train", "--config", cfg, "--epochs", 1, "--metrics-out", metrics, "--quiet")
    assert res.returncode == 0, res.stderr
    lines = [json.loads(line) for line in metrics.read_text().splitlines()]
    assert lines[-1]["step"] == 2 and max(r.get("epoch", 0) for r in lines) == 1
    assert lines[0]["type"] == "run" and lines[0]["config"]["optimizer"] == "adam"


def test_summary_command():
    res = dptrain("summary", "--model", "thesis-cnn")
    assert res.returncode == 0 and "160,490" in res.stdout
    js = json.loads(dptrain("summary", "--model", "vgg-cifar", "--json").stdout)
    assert js["total_params"] == sum(r["params"] for r in js["layers"])


def test_bench_smoke():
    res = dptrain("bench", "--model", "mlp", "--steps", 3, "--warmup", 1, "--rounds", 1,
                  "--no-torch", "--json")
    assert res.returncode == 0, res.stderr
    rep = json.loads(res.stdout)
    # no bound on the fraction of peak: the sgemm roof and the step are timed at different
    # moments, and on a loaded machine their ratio says nothing (speed lives in benchmarks)
    assert rep["dptrain_step_ms"] > 0 and rep["sgemm_peak_gflops"] > 0 and rep["peak_rss_mb"] > 0
    assert rep["fraction_of_peak"] == pytest.approx(rep["achieved_gflops"] / rep["sgemm_peak_gflops"])


def test_batch_size_sweep_with_pytorch_side_by_side():
    """The sweep the GPU report uses, here on the CPU: every model x batch x kernel mode, with
    PyTorch's time and TFLOP/s from the same run when torch is installed."""
    res = dptrain("bench", "--model", "thesis-cnn,mlp", "--batch-sizes", "4,8", "--steps", 2,
                  "--warmup", 1, "--rounds", 1, "--kernels", "auto,generic", "--json")
    assert res.returncode == 0, res.stderr
    rep = json.loads(res.stdout)
    assert {(r["model"], r["batch"], r["kernels"]) for r in rep["rows"]} == {
        (m, b, k) for m in ("thesis-cnn", "mlp") for b in (4, 8) for k in ("auto", "generic")}
    for r in rep["rows"]:
        assert r["dptrain_step_ms"] > 0 and r["dptrain_tflops"] > 0
        if importlib.util.find_spec("torch"):
            assert r["torch_step_ms"] > 0 and r["dptrain_over_torch"] > 0
    assert rep["device"].startswith("CPU")


@pytest.mark.parametrize("args,named", [(("--device", "gpu"), "--device gpu"),
                                        (("--batch-sizes", "64,x"), "--batch-sizes"),
                                        (("--batch-sizes", "8", "--kernels", "fast"), "--kernels")])
def test_bench_sweep_bad_input(args, named):
    from dptrain import backend
    if backend.gpu_available() and "gpu" in args:
        pytest.skip("this machine has a GPU")
    assert_usage_error(dptrain("bench", "--no-torch", *args), named)


def test_non_finite_loss_exits_3():
    res = dptrain("train", "--model", "mlp", "--dataset", "synthetic:1x8x8:200", "--optimizer", "sgd",
                  "--lr", "1e30", "--epochs", 2, "--quiet")
    assert res.returncode == 3, res.stderr
    assert "step" in res.stderr and "Traceback" not in res.stderr


# --- bad input: exit 2, one line naming the culprit -------------------------------------------

def test_missing_data_directory(tmp_path):
    assert_usage_error(dptrain("train", "--dataset", f"mnist:{tmp_path / 'none'}"), "none",
                       "no such directory")


def test_missing_npz_file(tmp_path):
    assert_usage_error(dptrain("train", "--dataset", f"npz:{tmp_path / 'x.npz'}"), "x.npz", "no such file")


def test_truncated_idx(tmp_path):
    make_mnist_dir(tmp_path)
    write_idx(tmp_path / "train-images-idx3-ubyte", np.zeros((20, 28, 28)), truncate=7)
    assert_usage_error(dptrain("train", "--dataset", f"mnist:{tmp_path}"),
                       "train-images-idx3-ubyte", "truncated")


def test_wrong_idx_magic(tmp_path):
    make_mnist_dir(tmp_path)
    (tmp_path / "train-labels-idx1-ubyte").write_bytes(b"PK\x03\x04" + bytes(40))
    assert_usage_error(dptrain("train", "--dataset", f"mnist:{tmp_path}"),
                       "train-labels-idx1-ubyte", "bad magic")


def test_image_label_mismatch(tmp_path):
    make_mnist_dir(tmp_path, **{"t10k-labels-idx1-ubyte": np.arange(3)})
    assert_usage_error(dptrain("train", "--dataset", f"mnist:{tmp_path}"), "10 images", "3 labels")


def test_unknown_model_and_optimizer():
    assert_usage_error(dptrain("train", "--model", "resnet50"), "resnet50")
    assert_usage_error(dptrain("train", "--optimizer", "lamb", "--dataset", "synthetic"), "lamb")


@pytest.mark.parametrize("flag,value", [("--batch-size", 0), ("--batch-size", -4), ("--lr", 0),
                                        ("--lr", -0.1), ("--epochs", 0)])
def test_non_positive_numbers(flag, value):
    assert_usage_error(dptrain("train", flag, value), flag, "positive")


def test_malformed_toml(tmp_path):
    cfg = tmp_path / "bad.toml"
    cfg.write_text("epochs = = 3\n")
    assert_usage_error(dptrain("train", "--config", cfg), "bad.toml", "malformed TOML")


def test_unknown_config_key(tmp_path):
    cfg = tmp_path / "c.toml"
    cfg.write_text("epochs = 1\nlearning_rate = 0.1\n")
    assert_usage_error(dptrain("train", "--config", cfg), "c.toml", "learning_rate")


def test_wrongly_typed_config_value(tmp_path):
    cfg = tmp_path / "c.toml"
    cfg.write_text('batch_size = "large"\n')
    assert_usage_error(dptrain("train", "--config", cfg), "batch_size", "number")


def test_unknown_flag_and_unwritable_output(tmp_path):
    assert_usage_error(dptrain("train", "--bogus"), "--bogus")
    assert_usage_error(dptrain("train", "--metrics-out", tmp_path / "no" / "m.jsonl"),
                       "--metrics-out", "does not exist")


def test_eval_with_wrong_weights(tmp_path):
    np.savez(tmp_path / "w.npz", **{"0.W": np.zeros((2, 2))})
    assert_usage_error(dptrain("eval", "--model", "mlp", "--weights", tmp_path / "w.npz"), "w.npz")
    assert_usage_error(dptrain("eval", "--model", "mlp", "--weights", tmp_path / "none.npz"),
                       "none.npz", "no such")


def test_model_that_does_not_fit_the_images():
    assert_usage_error(dptrain("train", "--model", "thesis-cnn", "--dataset", "synthetic:1x8x8:100"),
                       "thesis-cnn", "(1, 8, 8)")


def test_json_out_writes_what_json_prints(tmp_path):
    out = tmp_path / "predict.json"
    res = dptrain("bench", "--predict", "--lee", "--json", "--json-out", str(out))
    assert res.returncode == 0, res.stderr
    assert json.loads(out.read_text()) == json.loads(res.stdout)
    assert_usage_error(dptrain("bench", "--predict", "--json-out", str(tmp_path / "no" / "p.json")),
                       "--json-out")
