"""Issue 19 from Python: ctypes buffers (no strides) are read, not crashed on; layer-preset files
that are FIFOs or devices are refused at once (they used to hang holding the GIL), a path with a
NUL is refused instead of cut short; a device index too large for an int is a kvarn_cl error (it
used to be IndexError), and `auto` falls back from it."""

import ctypes
import os
import subprocess
import sys

import numpy as np
import pytest

import kvarn_cl
from conftest import kv_with_outliers


def test_ctypes_arrays_in_and_out(cpu):
    # ctypes leaves Py_buffer.strides NULL (allowed for C-contiguous data); nanobind read them
    # anyway: SIGSEGV in dequantize and quantize.
    rng = np.random.default_rng(19)
    k, v = kv_with_outliers(rng, (128, 128))
    rec = kvarn_cl.quantize(k, v, backend=cpu)
    as_ctypes = (ctypes.c_uint8 * rec.nbytes).from_buffer_copy(rec.tobytes())
    k_back, v_back = kvarn_cl.dequantize(as_ctypes, head_dim=128, backend=cpu)
    k_ref, v_ref = kvarn_cl.dequantize(rec, head_dim=128, backend=cpu)
    assert np.array_equal(k_back, k_ref) and np.array_equal(v_back, v_ref)
    out = ((ctypes.c_uint8 * rec.nbytes) * 1)()
    kvarn_cl.quantize(k, v, backend=cpu, out=out)
    assert bytes(out) == rec.tobytes()
    # A ctypes array of the wrong type is refused with the usual message.
    wrong = (ctypes.c_uint16 * k.size).from_buffer_copy(k.tobytes())
    with pytest.raises(kvarn_cl.InvalidArgument, match=r"quantize: k: dtype uint16"):
        kvarn_cl.quantize(wrong, wrong, backend=cpu)


def test_layer_preset_fifo_and_devices_are_refused(tmp_path):
    # Run in a child process: before the fix the read blocked forever holding the GIL, which no
    # thread of this process could have interrupted.
    fifo = str(tmp_path / "fifo")
    os.mkfifo(fifo)
    code = (
        "import kvarn_cl, sys\n"
        "for call in (lambda p: kvarn_cl.read_layer_presets(p),\n"
        "             lambda p: kvarn_cl.KVCache(backend='cpu', layer_presets=p)):\n"
        "    for path in sys.argv[1:]:\n"
        "        try:\n"
        "            call(path)\n"
        "        except kvarn_cl.IoError as e:\n"
        "            print('refused:', e)\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code, fifo, "/dev/zero", "/dev/urandom"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert len(lines) == 6, done.stdout
    assert all("not a regular file" in line for line in lines), done.stdout


def test_path_with_nul_is_refused():
    with pytest.raises(kvarn_cl.InvalidArgument, match=r"contains a NUL character"):
        kvarn_cl.read_layer_presets("docs/layer_presets\0/x.txt")


def test_device_index_too_large_for_an_int(monkeypatch):
    monkeypatch.setenv("KVARN_CL_DEVICE", "99999999999")
    if kvarn_cl.with_opencl:
        with pytest.raises(kvarn_cl.Unsupported, match=r"99999999999"):
            kvarn_cl.Backend("opencl")
    assert "cpu" in kvarn_cl.Backend("auto").name
