"""Build the compiled CPU kernels: ``python -m dptrain.native.build`` (``make`` runs it).

Every source in src/ goes into one shared library per instruction-set level this machine's
architecture has (x86-64: generic, x86-64-v3 with AVX2 and FMA, x86-64-v4 with AVX-512), so a
venv shared by cluster nodes of different generations holds a library each node can run;
the loader (__init__.py) picks the highest level the CPU has. A library's name carries a
digest of the sources: editing a kernel makes the old build invisible instead of calling a
function whose arguments changed.

The compiler is $CC, else cc, gcc or clang from PATH, else Zig's C compiler from the
``ziglang`` package, which ``--install-compiler`` (make passes it) installs from PyPI into
this Python's environment: a user needs no compiler of their own. A build that fails leaves
the NumPy paths in force and says so in one line; it never stops ``make``.
"""
from __future__ import annotations

import argparse
import importlib.util
import os
import platform
import shlex
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from . import BUILD_DIR, SRC_DIR, library_name, source_digest

ZIG_PACKAGE = "ziglang==0.14.1"
# -O3 and no -ffast-math: the kernels keep IEEE semantics (NaN and infinity propagate, so the
# trainer's divergence check sees them); GNU C lets the compiler contract a*b+c into FMAs.
COMMON_FLAGS = ["-O3", "-std=gnu11", "-fPIC", "-shared", "-fvisibility=hidden",
                "-fno-math-errno", "-Wall", "-Werror=implicit-function-declaration"]
X86_LEVELS = (("generic", ["-march=x86-64"]), ("x86-64-v3", ["-march=x86-64-v3"]),
              # 256-bit vectors: with 512 GCC 12 turned the pooling kernel's selects into
              # mask code 2.8x slower on the Zen 4 development machine (0.96 against 2.57 ms)
              ("x86-64-v4", ["-march=x86-64-v4", "-mprefer-vector-width=256"]))


def levels() -> tuple:
    """The (name, flags) levels built on this architecture."""
    if platform.machine().lower() in ("x86_64", "amd64"):
        return X86_LEVELS
    return (("generic", []),)


def _zig() -> list[str] | None:
    if importlib.util.find_spec("ziglang") is None:
        return None
    return [sys.executable, "-m", "ziglang", "cc"]


def find_compiler(install: bool = False) -> list[str] | None:
    """The C compiler's command line, or None; with ``install``, pip-installs ziglang when
    nothing else is found."""
    if os.environ.get("CC"):
        return shlex.split(os.environ["CC"])
    for name in ("cc", "gcc", "clang"):
        if shutil.which(name):
            return [name]
    if _zig() is None and install:
        print(f"dptrain: no C compiler found: installing {ZIG_PACKAGE} from PyPI into "
              f"{sys.prefix}", flush=True)
        subprocess.run([sys.executable, "-m", "pip", "install", "-q", ZIG_PACKAGE], check=False)
    return _zig()


def _for_compiler(cc: list[str], flags: list[str]) -> list[str]:
    """Zig's C compiler names CPU levels its own way: -mcpu=x86_64_v3 for -march=x86-64-v3."""
    if "ziglang" not in cc:
        return flags
    return [f"-mcpu={f.split('=', 1)[1].replace('-', '_')}" if f.startswith("-march=") else f
            for f in flags]


def _compile(cc: list[str], flags: list[str], isa: str, out: Path) -> str | None:
    """Compile every source into ``out`` (atomically); the compiler's error text, or None."""
    flags = _for_compiler(cc, flags)
    sources = sorted(str(p) for p in SRC_DIR.glob("*.c"))
    with tempfile.TemporaryDirectory(dir=out.parent) as tmp:
        part = Path(tmp) / out.name
        cmd = [*cc, *COMMON_FLAGS, *flags, f'-DDPN_ISA="{isa}"', f"-I{SRC_DIR}", "-o",
               str(part), *sources, "-lm"]
        done = subprocess.run(cmd, capture_output=True, text=True)
        if done.returncode != 0:
            return (done.stderr or done.stdout).strip() or f"exit {done.returncode}"
        os.replace(part, out)
    return None


def build(install_compiler: bool = False, force: bool = False) -> bool:
    """Build what is missing for the current sources; True when every level is there."""
    BUILD_DIR.mkdir(parents=True, exist_ok=True)
    digest = source_digest()
    wanted = {library_name(isa, digest) for isa, _ in levels()}
    for stale in BUILD_DIR.glob("libdpn-*.so"):
        if stale.name not in wanted:
            stale.unlink()
    missing = [(isa, flags) for isa, flags in levels()
               if force or not (BUILD_DIR / library_name(isa, digest)).exists()]
    if not missing:
        return True
    cc = find_compiler(install_compiler)
    if cc is None:
        print("dptrain: note: no C compiler (set CC, or run make to install one): the CPU "
              "kernels run as NumPy code", flush=True)
        return False
    ok = True
    for isa, flags in missing:
        error = _compile(cc, flags, isa, BUILD_DIR / library_name(isa, digest))
        if error is not None:
            ok = False
            print(f"dptrain: note: compiled CPU kernels for {isa} not built "
                  f"({' '.join(cc)}): {error.splitlines()[-1]}", flush=True)
    if ok:
        print(f"dptrain: compiled CPU kernels built ({', '.join(isa for isa, _ in missing)}; "
              f"{' '.join(cc)}) in {BUILD_DIR}", flush=True)
    return ok


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m dptrain.native.build",
                                     description=__doc__.splitlines()[0])
    parser.add_argument("--install-compiler", action="store_true",
                        help=f"pip-install {ZIG_PACKAGE} when no C compiler is found")
    parser.add_argument("--force", action="store_true", help="rebuild even when up to date")
    parser.add_argument("--strict", action="store_true", help="exit 1 when a build fails")
    args = parser.parse_args(argv)
    ok = build(args.install_compiler, args.force)
    return 0 if ok or not args.strict else 1


if __name__ == "__main__":
    sys.exit(main())
