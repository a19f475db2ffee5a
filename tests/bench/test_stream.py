"""A bench a person can watch (bench/stream.py): the progress line, --json-out rewritten
after every measurement, and what a cut bench prints."""
import io
import json
from types import SimpleNamespace

import pytest

from dptrain.bench.stream import BenchStream, Progress, clock


class FakeClock:
    def __init__(self):
        self.t = 100.0

    def __call__(self):
        return self.t


def test_progress_in_a_log_is_one_plain_line_per_measurement():
    out, now = io.StringIO(), FakeClock()
    p = Progress(4, out, now)
    p.update("round 1, a")                    # nothing finished yet: nothing to say
    for i in range(1, 4):
        now.t += 10
        p.done = i
        p.update()                            # a finished measurement alone writes nothing
        p.update(f"round 1, row {i}")
    lines = out.getvalue().splitlines()
    assert lines == ["dptrain bench: 1/4 done, 0:10 elapsed, ~0:30 left; next: round 1, row 1",
                     "dptrain bench: 2/4 done, 0:20 elapsed, ~0:20 left; next: round 1, row 2",
                     "dptrain bench: 3/4 done, 0:30 elapsed, ~0:10 left; next: round 1, row 3"]
    assert "\r" not in out.getvalue()


def test_progress_at_a_terminal_rewrites_one_line():
    class Tty(io.StringIO):
        def isatty(self):
            return True
    out, now = Tty(), FakeClock()
    p = Progress(3, out, now)
    p.update("first")
    now.t += 5
    p.done = 1
    p.update("second")
    p.clear()
    assert out.getvalue().count("\n") == 0 and out.getvalue().count("\r") == 3
    assert "1/3 done, 0:05 elapsed, ~0:10 left; next: second" in out.getvalue()


def test_clock():
    assert [clock(s) for s in (0, 41, 723, 3723)] == ["0:00", "0:41", "12:03", "1:02:03"]


def _stream(tmp_path, json_mode=False, planned=3):
    args = SimpleNamespace(json=json_mode, json_out=str(tmp_path / "out.json"))
    rows = []
    stream = BenchStream(args, planned, lambda: {"rows": list(rows)},
                         lambda rep: print("TABLE", rep["rows"]), Progress(planned, io.StringIO()))
    return stream, rows, tmp_path / "out.json"


def test_json_out_holds_every_finished_measurement(tmp_path, capsys):
    stream, rows, out = _stream(tmp_path)
    for i in range(2):
        rows.append(i)
        stream.finished(f"row {i}")
        written = json.loads(out.read_text())
        assert written["rows"] == rows and written["complete"] is False
        assert written["measurements_done"] == i + 1 and written["measurements_planned"] == 3
    assert capsys.readouterr().out == "row 0\nrow 1\n"        # each line as it finished
    rows.append(2)
    stream.finished("row 2")
    assert stream.close() == 0
    assert json.loads(out.read_text())["complete"] is True
    assert capsys.readouterr().out == "row 2\nTABLE [0, 1, 2]\n"


@pytest.mark.parametrize("json_mode", [False, True])
def test_a_cut_bench_prints_what_finished_and_goes_on_with_the_interruption(tmp_path, capsys,
                                                                             json_mode):
    stream, rows, out = _stream(tmp_path, json_mode)
    with pytest.raises(KeyboardInterrupt):
        with stream.watch():
            rows.append("first")
            stream.finished("row first")
            raise KeyboardInterrupt
    printed = capsys.readouterr().out
    if json_mode:                             # stdout stays one JSON object
        report = json.loads(printed)
        assert report["rows"] == ["first"] and report["complete"] is False
    else:
        assert printed.startswith("row first\ncut after 1 of 3 measurements")
        assert "TABLE ['first']" in printed
    assert json.loads(out.read_text())["rows"] == ["first"]
