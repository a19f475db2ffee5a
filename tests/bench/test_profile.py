"""``dptrain bench --profile``: the parts cover the step, every layer is there, the JSON
report's schema, the CUDA-event timer (with a stand-in for CuPy's events), and the command."""
import json
import subprocess
import sys

import pytest

import cuda_event_standin
from dptrain import backend, models
from dptrain.bench.profile import measure_parts, summarise
from dptrain.bench.timers import DeviceTimer, HostTimer
from nccl_standin import LOG

OTHER_PARTS = ("loss forward", "loss backward", "update")


def dptrain(*args):
    return subprocess.run([sys.executable, "-m", "dptrain.cli", *map(str, args)],
                          capture_output=True, text=True, timeout=300)


def expected_order(model) -> list[str]:
    """The parts of one step in the order they run: forward down the layers, the loss, backward
    up to the first parametrised layer, the update."""
    first = next(i for i, layer in enumerate(model.layers) if layer.params)
    n = len(model.layers)
    return ([f"forward {i}" for i in range(n)] + ["loss forward", "loss backward"]
            + [f"backward {i}" for i in range(n - 1, first - 1, -1)] + ["update"])


@pytest.mark.parametrize("timer", [HostTimer, lambda: DeviceTimer(cuda_event_standin.cuda())],
                         ids=["host", "cuda-events"])
def test_parts_lie_within_the_step_and_add_up_to_it_with_the_remainder(timer):
    model = models.get("thesis-cnn")
    samples = measure_parts(model, batch=4, steps=3, warmup=1, timer=timer())
    assert len(samples) == 3
    for spans in samples:
        assert list(spans) == expected_order(model) + ["step"]
        assert all(v >= 0 for v in spans.values())
        assert sum(v for k, v in spans.items() if k != "step") <= spans["step"]
    p = summarise(model, 4, samples)
    parts = ([r["forward_ms"] for r in p["layers"]] + [r["backward_ms"] or 0.0 for r in p["layers"]]
             + [p["loss"]["forward_ms"], p["loss"]["backward_ms"], p["update"]["ms"]])
    assert sum(parts) + p["unaccounted_ms"] == pytest.approx(p["step_ms"], rel=1e-12)
    shares = ([r["forward_share"] for r in p["layers"]] + [r["backward_share"] or 0.0 for r in p["layers"]]
              + [p["loss"]["forward_share"], p["loss"]["backward_share"], p["update"]["share"]])
    assert sum(shares) + p["unaccounted_share"] == pytest.approx(1.0)
    assert p["update"]["ms"] == pytest.approx(sorted(s["update"] for s in samples)[1] * 1e3)


@pytest.mark.parametrize("name", ["thesis-cnn", "vgg-cifar", "mlp"])
def test_every_layer_is_profiled_and_every_parametrised_one_backward_too(name):
    model = models.get(name)
    p = summarise(model, 2, measure_parts(model, batch=2, steps=1, warmup=0, timer=HostTimer()))
    assert [r["index"] for r in p["layers"]] == list(range(len(model.layers)))
    first = next(i for i, layer in enumerate(model.layers) if layer.params)
    for r, layer, shape in zip(p["layers"], model.layers, model.shapes):
        assert r["name"] == repr(layer) and r["output_shape"] == [2, *shape]
        assert r["forward_ms"] is not None
        assert (r["backward_ms"] is not None) == (r["index"] >= first)    # none below: skipped
        if layer.params:
            assert r["params"] > 0 and r["backward_ms"] is not None
    assert all(p["loss"][k] is not None for k in ("forward_ms", "backward_ms"))
    assert p["update"]["ms"] is not None


def test_cuda_events_are_recorded_in_order_on_the_stream_and_read_once_after_each_step():
    model = models.get("mlp")
    timer = DeviceTimer(cuda_event_standin.cuda())
    measure_parts(model, batch=4, steps=2, warmup=1, timer=timer)
    which = {event.name: f"{part} {end}" for part, pair in timer.events.items()
             for event, end in zip(pair, ("start", "stop"))}
    assert len(which) == 2 * len(timer.events)                   # a pair per part, reused
    parts = expected_order(model)
    one_step = (["record step start"]
                + [f"record {p} {end}" for p in parts for end in ("start", "stop")]
                + ["record step stop", "host-sync step stop"]
                + [f"elapsed {p}" for p in parts + ["step"]])
    seen = []
    for entry in LOG:
        if entry[0] == "record":
            assert entry[2] == "compute"                         # the current stream
            seen.append(f"record {which[entry[1]]}")
        elif entry[0] == "host-sync":
            seen.append(f"host-sync {which[entry[1]]}")
        else:
            start, stop = which[entry[1]], which[entry[2]]
            assert start.rsplit(" ", 1)[0] == stop.rsplit(" ", 1)[0]
            seen.append(f"elapsed {start.rsplit(' ', 1)[0]}")
    assert seen == one_step * 3                                  # warm-up step included


def test_json_report_schema(tmp_path):
    out = tmp_path / "profile.json"
    res = dptrain("bench", "--profile", "--model", "mlp,thesis-cnn", "--batch-size", 4,
                  "--steps", 2, "--warmup", 1, "--json-out", out)
    assert res.returncode == 0, res.stderr
    report = json.loads(out.read_text())
    assert {k: report[k] for k in ("profile", "device", "timer", "batch_size", "threads", "steps",
                                   "warmup")} == {"profile": True, "device": "cpu",
                                                  "timer": "time.perf_counter", "batch_size": 4,
                                                  "threads": 1, "steps": 2, "warmup": 1}
    assert [p["model"] for p in report["models"]] == ["mlp", "thesis-cnn"]
    for p in report["models"]:
        assert set(p) == {"model", "layers", "loss", "update", "step_ms", "unaccounted_ms",
                          "unaccounted_share"}
        assert set(p["loss"]) == {"name", "forward_ms", "forward_share", "backward_ms", "backward_share"}
        assert set(p["update"]) == {"optimizer", "ms", "share"}
        for r in p["layers"]:
            assert set(r) == {"index", "name", "output_shape", "params", "forward_ms",
                              "forward_share", "backward_ms", "backward_share"}
    # the table names every layer of the model with its output shape, and the remainder
    assert "Dense(784->256)" in res.stdout and "4x256" in res.stdout and "unaccounted" in res.stdout


def test_cli_profile_table():
    res = dptrain("bench", "--profile", "--model", "mlp", "--batch-size", 8, "--steps", 2, "--warmup", 0)
    assert res.returncode == 0, res.stderr
    lines = res.stdout.splitlines()
    assert lines[0].startswith("dptrain bench --profile: mlp, batch 8, cpu, 1 thread(s), median of 2 steps")
    model = models.get("mlp")
    for i, layer in enumerate(model.layers):
        assert any(line.split()[:2] == [str(i), repr(layer).split()[0]] for line in lines), (i, res.stdout)
    for label in ("loss (softmax cross-entropy)", "optimiser update (adadelta)", "unaccounted", "step"):
        assert any(line.strip().startswith(label) for line in lines), label
    json_line = dptrain("bench", "--profile", "--model", "mlp", "--batch-size", 8, "--steps", 1,
                        "--json")
    assert json.loads(json_line.stdout)["models"][0]["model"] == "mlp"


@pytest.mark.parametrize("args, named", [
    (["--ranks", "1,2"], "--profile cannot be combined with --ranks"),
    (["--batch-sizes", "4,8"], "--profile cannot be combined with --batch-sizes"),
    (["--model", "nope"], "unknown model 'nope'"),
    (["--steps", "0"], "--steps"),
    (["--device", "gpu"], "--device gpu"),
])
def test_cli_profile_bad_input(args, named):
    if "--device" in args and backend.gpu_available():
        pytest.skip("a GPU is here: --device gpu is good input")
    res = dptrain("bench", "--profile", *args)
    assert res.returncode == 2, (res.returncode, res.stderr)
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("dptrain: error: ") and named in lines[0], res.stderr
