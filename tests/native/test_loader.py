"""The compiled CPU kernels' build and loader (dptrain/native/): what is loaded, when, and when not."""
import shutil

import pytest

from dptrain import backend, native
from dptrain.native import build

HAS_COMPILER = build.find_compiler() is not None


@pytest.fixture
def fresh(monkeypatch):
    """Each test sees the loader's choice anew, and leaves it as it found it."""
    native.reload()
    yield monkeypatch
    monkeypatch.undo()
    native.reload()


@pytest.mark.skipif(not HAS_COMPILER, reason="no C compiler here (make installs one)")
def test_make_builds_every_level_and_the_best_one_loads(fresh):
    assert build.build()
    lib = native.library()
    assert lib is not None
    assert native.status().startswith(native.supported_levels()[0])


@pytest.mark.skipif(not HAS_COMPILER, reason="no C compiler here (make installs one)")
def test_each_level_reports_its_own_isa(fresh):
    for isa, _ in build.levels():
        if isa != "generic" and isa not in native.supported_levels():
            continue                                 # this CPU cannot run it
        fresh.setenv("DPTRAIN_NATIVE_ISA", isa)
        native.reload()
        assert native.status().startswith(isa)


def test_off_by_environment(fresh):
    fresh.setenv("DPTRAIN_NATIVE", "off")
    native.reload()
    assert native.library() is None and native.status().startswith("off")


def test_a_build_of_other_sources_is_not_loaded(fresh):
    fresh.setattr(native, "source_digest", lambda: "000000000000")
    native.reload()
    assert native.library() is None and native.status().startswith("not built")


@pytest.mark.skipif(not HAS_COMPILER, reason="no C compiler here (make installs one)")
def test_a_library_renamed_to_another_level_is_not_trusted(fresh, tmp_path):
    assert build.build()
    digest = native.source_digest()
    fresh.setattr(native, "BUILD_DIR", tmp_path)
    shutil.copy(build.BUILD_DIR / native.library_name("generic", digest),
                tmp_path / native.library_name("x86-64-v3", digest))
    fresh.setenv("DPTRAIN_NATIVE_ISA", "x86-64-v3")
    native.reload()
    assert native.library() is None


@pytest.mark.skipif(not HAS_COMPILER, reason="no C compiler here (make installs one)")
def test_kernels_generic_turns_the_compiled_families_off(fresh):
    import numpy as np
    assert build.build()
    x = np.zeros(4, np.float32)
    for family in backend.CPU_KERNEL_FAMILIES:
        assert native.runs(x, family, backend.Backend(kernels="auto"))
        assert not native.runs(x, family, backend.Backend(kernels="generic"))
        assert not native.runs(x.astype(np.float64), family, backend.Backend(kernels="auto"))


def test_ptr_refuses_strided_views_and_other_dtypes():
    import numpy as np
    a = np.zeros((4, 4), np.float32)
    assert native.ptr(a, np.float32) == a.ctypes.data
    with pytest.raises(ValueError):
        native.ptr(a[:, ::2], np.float32)
    with pytest.raises(ValueError):
        native.ptr(a, np.float64)


def test_zig_gets_its_own_spelling_of_the_cpu_levels():
    zig = ["/venv/bin/python", "-m", "ziglang", "cc"]
    assert build._for_compiler(zig, ["-march=x86-64-v3", "-O3"]) == ["-mcpu=x86_64_v3", "-O3"]
    assert build._for_compiler(["cc"], ["-march=x86-64-v3"]) == ["-march=x86-64-v3"]
