"""The package surface: version, presets, devices, backends, the error hierarchy, the stubs."""

import ast
import os
import re
import shutil
import subprocess
import sys

import numpy as np
import pytest

import kvarn_cl
from conftest import REPO


def test_version_matches_the_project():
    cmake = open(os.path.join(REPO, "CMakeLists.txt")).read()
    want = re.search(r"project\(kvarn_cl VERSION ([0-9.]+)", cmake).group(1)
    assert kvarn_cl.version() == want == kvarn_cl.__version__


def test_presets_and_record_bytes():
    names = [p["name"] for p in kvarn_cl.presets()]
    assert names == ["k4v2_g128", "k4v4_g128", "k2v2_g128", "k4v2_g64", "k4v4_g64"]
    for p in kvarn_cl.presets():
        for d in (64, 128, 256):  # SPEC §2.5: D·G·(kb+vb)/8 + 6D + 6G
            want = d * p["group"] * (p["k_bits"] + p["v_bits"]) // 8 + 6 * d + 6 * p["group"]
            assert p["record_bytes"][d] == want == kvarn_cl.record_bytes(p["name"], d)
    assert [p["name"] for p in kvarn_cl.presets() if p["default"]] == ["k4v2_g128"]
    assert [p["name"] for p in kvarn_cl.presets() if p["experimental"]] == ["k2v2_g128"]
    assert kvarn_cl.record_bytes() == 13824
    with pytest.raises(kvarn_cl.InvalidArgument, match="head_dim 100"):
        kvarn_cl.record_bytes("k4v2_g128", 100)


def test_devices_and_backends(cpu):
    devs = kvarn_cl.devices()
    assert isinstance(devs, list)
    for d in devs:
        assert d["type"] in ("gpu", "accelerator", "cpu", "other") and d["name"]
        assert d["local_mem_bytes"] > 0 and d["compute_units"] > 0
    assert cpu.kind == "cpu" and not cpu.is_opencl and cpu.fallback_reason is None
    assert "1 thread" in kvarn_cl.Backend("cpu", threads=1).name
    # the library's rule (make_backend): a GPU or accelerator, else the C++ CPU backend, which is
    # also preferred to an OpenCL CPU device such as PoCL
    auto = kvarn_cl.Backend("auto")
    assert auto.reason
    if any(d["type"] in ("gpu", "accelerator") for d in devs):
        assert auto.kind == "opencl"
    else:
        assert auto.kind == "cpu"
    if not devs:
        assert auto.fallback_reason
    assert kvarn_cl.Backend("cpu").reason is None
    assert repr(cpu).startswith("kvarn_cl.Backend('cpu")
    with pytest.raises(kvarn_cl.InvalidArgument, match="unknown backend 'gpu'"):
        kvarn_cl.Backend("gpu")
    with pytest.raises(kvarn_cl.InvalidArgument, match="kind 'cpu' takes neither"):
        kvarn_cl.Backend("cpu", device=0)
    # one rule with C and C++ (make_backend): threads belong to the CPU backend, whenever it is made
    with pytest.raises(kvarn_cl.InvalidArgument, match="cpu_threads 2 applies to the CPU backend"):
        kvarn_cl.Backend("opencl", threads=2)
    fell_back = kvarn_cl.Backend("auto", device="no such device xyz", threads=1)
    assert fell_back.kind == "cpu" and "1 thread" in fell_back.name
    assert fell_back.fallback_reason and fell_back.requested == "auto"
    with pytest.raises(kvarn_cl.InvalidArgument, match="backend must be a kvarn_cl.Backend"):
        kvarn_cl.quantize(np.zeros((128, 64), np.float16), np.zeros((128, 64), np.float16), backend=3)


def test_opencl_device_selection(opencl):
    d = kvarn_cl.devices()[0]
    b = kvarn_cl.Backend("opencl", platform=d["platform_index"], device=d["name"][:4])
    assert b.kind == "opencl" and d["name"] in b.name
    with pytest.raises(kvarn_cl.Unsupported):
        kvarn_cl.Backend("opencl", device="no such device")
    fell_back = kvarn_cl.Backend("auto", device="no such device")
    assert fell_back.kind == "cpu" and "no such device" in fell_back.fallback_reason


def test_error_hierarchy_mirrors_the_library():
    """One class per C++ exception type of include/kvarn_cl/error.hpp, under kvarn_cl.Error."""
    header = open(os.path.join(REPO, "include", "kvarn_cl", "error.hpp")).read()
    cpp = set(re.findall(r"^KVARN_CL_DEFINE_ERROR\((\w+),", header, re.M)) | {"KernelBuildError"}
    assert len(cpp) == 8
    for name in cpp:
        cls = getattr(kvarn_cl, name)
        assert issubclass(cls, kvarn_cl.Error) and cls is not kvarn_cl.Error
    assert issubclass(kvarn_cl.InvalidArgument, ValueError)
    assert issubclass(kvarn_cl.OutOfMemory, MemoryError)
    assert issubclass(kvarn_cl.IoError, OSError)
    codes = dict(re.findall(r"^\s+(\w+) = (\d+),", header, re.M))
    assert {s.name: str(s.value) for s in kvarn_cl.Status} == codes
    try:
        kvarn_cl.KVCache(head_dim=100)
    except kvarn_cl.Error as e:
        assert type(e) is kvarn_cl.InvalidArgument and e.status == kvarn_cl.Status.invalid_argument
        assert "head_dim 100" in str(e) and e.message == str(e)


def test_stubs_cover_the_extension():
    """_kvarn_cl.pyi declares every public name of the extension, and every KVCache / Backend
    member, so editors see the whole API."""
    stub = ast.parse(open(os.path.join(os.path.dirname(kvarn_cl.__file__), "_kvarn_cl.pyi")).read())
    top = {n.name for n in stub.body if isinstance(n, (ast.FunctionDef, ast.ClassDef))}
    top |= {t.id for n in stub.body if isinstance(n, ast.AnnAssign) for t in [n.target]}
    ext = kvarn_cl._kvarn_cl
    public = {n for n in dir(ext) if not n.startswith("__") and n not in ("_shared_backends", "Error")}
    assert public <= top, public - top
    for cls in ("KVCache", "Backend"):
        node = next(n for n in stub.body if isinstance(n, ast.ClassDef) and n.name == cls)
        members = {n.name for n in node.body if isinstance(n, ast.FunctionDef)}
        real = {n for n in dir(getattr(ext, cls)) if not n.startswith("_")}
        real |= {"__init__", "__contains__", "__len__"} & set(dir(getattr(ext, cls)))
        assert real <= members, real - members
    assert os.path.exists(os.path.join(os.path.dirname(kvarn_cl.__file__), "py.typed"))


@pytest.mark.skipif(not sys.platform.startswith("linux") or shutil.which("ldd") is None,
                    reason="needs Linux and ldd")
def test_extension_needs_nothing_outside_the_package():
    """The wheel works alone: every shared library the extension loads is the C/C++ runtime, the
    OpenCL ICD loader, or ships inside the package (libhwy)."""
    ext = kvarn_cl._kvarn_cl.__file__
    system = ("linux-vdso", "ld-linux", "libc.so", "libm.so", "libstdc++.so", "libgcc_s.so",
              "libpthread.so", "libdl.so", "librt.so", "libOpenCL.so")
    pkg = os.path.dirname(os.path.realpath(ext))
    out = subprocess.run(["ldd", ext], capture_output=True, text=True, check=True).stdout
    for line in out.splitlines():
        name = os.path.basename(line.split()[0])
        if name.startswith(system):
            continue
        where = line.split("=>")[1].split("(")[0].strip() if "=>" in line else ""
        assert os.path.dirname(os.path.realpath(where)) == pkg, line
