"""The start-up comparison's parts (issue 20, kind 1): data digests, what is compared and
what may differ, the line that names a difference, and the exchange in startup.agree."""
import numpy as np
import pytest

from dptrain import data
from dptrain.data import fingerprint as data_fp
from dptrain.errors import UsageError
from dptrain.train import TrainConfig, fingerprint, startup


def test_array_digest_sees_one_changed_value_and_nothing_else():
    x = np.random.default_rng(0).random((50, 1, 8, 8), dtype=np.float32)
    same = x.copy()
    assert data_fp.array_digest(x) == data_fp.array_digest(same)
    same[49, 0, 7, 7] = np.nextafter(same[49, 0, 7, 7], 2)      # one ulp of the last value
    assert data_fp.array_digest(x) != data_fp.array_digest(same)
    assert data_fp.array_digest(x).startswith("crc32 ") and "sampled" not in data_fp.array_digest(x)


def test_a_memory_mapped_array_is_sampled_not_read_whole(tmp_path, monkeypatch):
    x = np.arange(100_000 * 16, dtype=np.float32).reshape(100_000, 16)
    np.save(tmp_path / "x.npy", x)
    mapped = np.load(tmp_path / "x.npy", mmap_mode="r")
    read = []
    monkeypatch.setattr(data_fp, "_crc", lambda a, crc=0: read.append(len(a)) or crc + len(a))
    assert data_fp.array_digest(mapped).endswith(f"of {data_fp.SAMPLE_ROWS} sampled rows")
    assert sum(read) == data_fp.SAMPLE_ROWS < len(x)
    monkeypatch.undo()
    changed = x.copy()
    changed[-1, 0] += 1                               # the last row is always in the sample
    np.save(tmp_path / "y.npy", changed)
    assert data_fp.array_digest(np.load(tmp_path / "y.npy", mmap_mode="r")) \
        != data_fp.array_digest(mapped)


def test_an_array_over_the_full_limit_is_sampled(monkeypatch):
    monkeypatch.setattr(data_fp, "FULL_BYTES", 1000)
    assert "sampled rows" in data_fp.array_digest(np.zeros((100, 10), np.float32))
    assert "sampled" not in data_fp.array_digest(np.zeros((10, 10), np.float32))


def test_dataset_fields_name_the_split_that_differs(tmp_path):
    rng = np.random.default_rng(0)
    x, y = rng.random((40, 1, 8, 8), dtype=np.float32), np.arange(40) % 4
    xt, yt = rng.random((10, 1, 8, 8), dtype=np.float32), np.arange(10) % 4
    for name in ("a", "b"):
        (tmp_path / name).mkdir()
        np.savez(tmp_path / name / "d.npz", x=x, y=y, x_test=xt, y_test=yt)
        xt = xt.copy()
        xt[3, 0, 0, 0] += 0.5                      # b's test split differs in one pixel
    fields = [data_fp.dataset_fields(data.load(f"npz:{tmp_path / name / 'd.npz'}"))
              for name in ("a", "b")]
    differ = [wa for (wa, va), (_, vb) in zip(*fields) if va != vb]
    assert len(differ) == 1 and differ[0].startswith("the content of the test images of npz:")
    assert data_fp.dataset_fields(data.load("synthetic:1x8x8:100")) == \
        data_fp.dataset_fields(data.load("synthetic:1x8x8:100"))


def test_the_digest_is_of_the_data_as_read_not_as_normalised():
    """Normalising sums in an order that may differ between nodes' CPUs: the digest is taken
    before, so a last-bit difference there cannot refuse equal data."""
    ds = data.load("synthetic:1x8x8:100")
    before = data_fp.dataset_fields(ds)
    ds.x_train[0, 0, 0, 0] = np.nextafter(ds.x_train[0, 0, 0, 0], 9)
    assert data_fp.dataset_fields(ds) == before


def test_every_config_field_is_compared_except_those_that_may_differ():
    labels = [what for what, _ in fingerprint.config_fields(TrainConfig())]
    assert "--seed" in labels and "--lr" in labels and "--save-weights" in labels
    assert "--check-collectives (or $DPTRAIN_CHECK_COLLECTIVES)" in labels
    assert not {"--threads", "--quiet", "--device", "--allow-gpu-sharing"} & set(labels)
    assert set(fingerprint.MAY_DIFFER) == {"threads", "quiet", "device", "allow_gpu_sharing"}


def test_code_digest_is_computed_once_and_names_the_sources():
    assert fingerprint.code_digest() == fingerprint.code_digest()
    assert fingerprint.code_digest.cache_info().misses == 1
    assert len(fingerprint.code_digest()) == 16


@pytest.mark.parametrize("ranks,text", [([3], "rank 3"), ([0, 2], "ranks 0,2"), ([0, 1], "ranks 0,1"),
                                        ([0, 1, 2, 3, 5], "ranks 0-3,5")])
def test_ranks_text(ranks, text):
    assert fingerprint.ranks_text(ranks) == text


def test_disagreement_names_the_first_differing_field_and_each_rank():
    base = [("the dptrain version", "0.1.0"), ("--seed", "0"), ("--lr", "none")]
    other = [("the dptrain version", "0.1.0"), ("--seed", "7"), ("--lr", "0.5")]
    assert fingerprint.disagreement([(0, base), (1, base)]) is None
    assert fingerprint.disagreement([(1, other), (0, base)]) == \
        "ranks disagree on --seed: rank 0 has 0, rank 1 has 7"
    four = [(0, base), (1, other), (2, base), (3, other)]
    assert fingerprint.disagreement(four) == \
        "ranks disagree on --seed: ranks 0,2 have 0; ranks 1,3 have 7"


class TwoRanks:
    """Rank 0 of two, whose peer posts what it is given: each allreduce_obj returns this
    rank's list plus the peer's next one, as MPI's sum of lists does."""
    size = 2
    rank = 0

    def __init__(self, peer_posts):
        self.peer_posts, self.exchanges = list(peer_posts), 0

    def allreduce_obj(self, obj):
        self.exchanges += 1
        return obj + self.peer_posts.pop(0)


def test_agree_exchanges_once_when_ranks_agree_and_twice_to_name_a_difference():
    fields = [("--seed", "0")]
    comm = TwoRanks([[(1, None, fingerprint.digest(fields))]])
    assert startup.agree(comm, lambda: "setup", fingerprint=lambda _: fields) == "setup"
    assert comm.exchanges == 1
    theirs = [("--seed", "7")]
    refused = []
    comm = TwoRanks([[(1, None, fingerprint.digest(theirs))], [(1, theirs)]])
    with pytest.raises(UsageError, match="^ranks disagree on --seed: rank 0 has 0, rank 1 has 7$"):
        startup.agree(comm, lambda: "setup", on_refusal=lambda: refused.append(1),
                      fingerprint=lambda _: fields)
    assert comm.exchanges == 2 and refused == [1]


def test_agree_reports_a_rank_local_problem_before_comparing():
    comm = TwoRanks([[(1, "d.npz: no such file", None)]])
    with pytest.raises(UsageError, match="^rank 1: d.npz: no such file$"):
        startup.agree(comm, lambda: "setup", fingerprint=lambda _: [("--seed", "0")])
    assert comm.exchanges == 1
