"""quantize() / dequantize(): shapes, dtypes, bytes equal to the C++ codec (`kvarn-cl`), the
OpenCL backend against the CPU codec (SPEC §5), round trips, no copies, errors."""

import os
import subprocess

import numpy as np
import pytest

import kvarn_cl
from conftest import kv_with_outliers
from helpers import compare_records

PRESETS = [p["name"] for p in kvarn_cl.presets()]


def test_shapes_and_dtypes(cpu):
    rng = np.random.default_rng(1)
    k, v = kv_with_outliers(rng, (256, 128))
    rec = kvarn_cl.quantize(k, v, preset="k4v2_g128", backend=cpu)
    assert rec.dtype == np.uint8 and rec.shape == (2, 13824) and rec.flags.c_contiguous
    kd, vd = kvarn_cl.dequantize(rec, preset="k4v2_g128", backend=cpu)
    assert kd.dtype == np.float16 and kd.shape == (256, 128) and vd.shape == (256, 128)
    kf, vf = kvarn_cl.dequantize(rec, preset="k4v2_g128", backend=cpu, dtype=np.float32)
    assert kf.dtype == np.float32
    np.testing.assert_array_equal(kf, kd.astype(np.float32))  # float32 output = exact widening
    np.testing.assert_array_equal(vf, vd.astype(np.float32))
    # [Hk][T][D] in one call = one call per head
    k3, v3 = kv_with_outliers(rng, (3, 128, 64))
    rec3 = kvarn_cl.quantize(k3, v3, preset="k4v4_g64", backend=cpu)
    assert rec3.shape == (3, 2, kvarn_cl.record_bytes("k4v4_g64", 64))
    for h in range(3):
        np.testing.assert_array_equal(rec3[h], kvarn_cl.quantize(k3[h], v3[h], preset="k4v4_g64", backend=cpu))
    k3d, _ = kvarn_cl.dequantize(rec3, preset="k4v4_g64", backend=cpu)
    assert k3d.shape == (3, 128, 64)
    # float32 input holding fp16 values quantizes to the same bytes as the fp16 input
    np.testing.assert_array_equal(
        kvarn_cl.quantize(k.astype(np.float32), v.astype(np.float32), backend=cpu), rec)
    # no tokens: no records
    empty = kvarn_cl.quantize(k[:0], v[:0], backend=cpu)
    assert empty.shape == (0, 13824)


def test_bytes_like_records_and_head_dim(cpu):
    rng = np.random.default_rng(2)
    k, v = kv_with_outliers(rng, (128, 256))
    rec = kvarn_cl.quantize(k, v, backend=cpu)
    a = kvarn_cl.dequantize(rec, backend=cpu)
    for raw in (rec.tobytes(), bytearray(rec.tobytes()), memoryview(rec.tobytes()), rec.reshape(-1)):
        b = kvarn_cl.dequantize(raw, head_dim=256, backend=cpu)
        np.testing.assert_array_equal(a[0], b[0])
        np.testing.assert_array_equal(a[1], b[1])
    with pytest.raises(kvarn_cl.InvalidArgument, match="head_dim is required"):
        kvarn_cl.dequantize(rec.tobytes(), backend=cpu)


def write_f16(path, a):
    np.ascontiguousarray(a, dtype="<f2").tofile(path)


@pytest.mark.parametrize("preset", PRESETS)
@pytest.mark.parametrize("d", [64, 128, 256])
def test_bytes_equal_kvarn_cl_program(cli, cpu, tmp_path, preset, d):
    """The binding's records and decodings are byte for byte those of `kvarn-cl` (CPU codec)."""
    group = next(p["group"] for p in kvarn_cl.presets() if p["name"] == preset)
    rng = np.random.default_rng(d * 7 + len(preset))
    k, v = kv_with_outliers(rng, (2 * group, d))
    write_f16(tmp_path / "k.f16", k)
    write_f16(tmp_path / "v.f16", v)
    subprocess.run([cli, "quantize", "--preset", preset, "--head-dim", str(d), "--backend", "cpu",
                    "--k", str(tmp_path / "k.f16"), "--v", str(tmp_path / "v.f16"),
                    "--out", str(tmp_path / "r.kvarn")], check=True, capture_output=True)
    rec = kvarn_cl.quantize(k, v, preset=preset, backend=cpu)
    assert rec.tobytes() == (tmp_path / "r.kvarn").read_bytes()
    for rotated in (False, True):
        subprocess.run([cli, "dequantize", "--preset", preset, "--head-dim", str(d), "--backend", "cpu",
                        "--in", str(tmp_path / "r.kvarn"), "--k-out", str(tmp_path / "k2.f16"),
                        "--v-out", str(tmp_path / "v2.f16")] + (["--rotated"] if rotated else []),
                       check=True, capture_output=True)
        kd, vd = kvarn_cl.dequantize(rec, preset=preset, rotated=rotated, backend=cpu)
        assert kd.astype("<f2").tobytes() == (tmp_path / "k2.f16").read_bytes()
        assert vd.astype("<f2").tobytes() == (tmp_path / "v2.f16").read_bytes()


@pytest.mark.parametrize("preset", PRESETS)
def test_decoding_matches_independent_reference(cpu, ref, preset):
    """Our decoding of our records against test/reference/kvarn_ref.py (written from SPEC alone)."""
    group = next(p["group"] for p in kvarn_cl.presets() if p["name"] == preset)
    rng = np.random.default_rng(5)
    k, v = kv_with_outliers(rng, (group, 128))
    rec = kvarn_cl.quantize(k, v, preset=preset, backend=cpu)
    kd, vd = kvarn_cl.dequantize(rec, preset=preset, rotated=True, backend=cpu, dtype=np.float32)
    kr, vr = ref.dequantize_sequence(rec.tobytes(), preset, 128, frame="rotated")
    # fp32 decode rounded once to fp16 by the library: within half an fp16 ulp (+ fp32 noise)
    np.testing.assert_allclose(kd, kr, rtol=2 ** -11 + 1e-6, atol=1e-6)
    np.testing.assert_allclose(vd, vr, rtol=2 ** -11 + 1e-6, atol=1e-6)


# Every bit width, both tile sizes and every head dimension once (PoCL compiles each geometry
# anew, several seconds each; the C++ suite test/opencl runs the full matrix).
@pytest.mark.parametrize("preset,d", [("k4v2_g128", 128), ("k4v4_g128", 64), ("k2v2_g128", 128),
                                      ("k4v2_g64", 256)])
def test_opencl_matches_cpu_codec(cpu, opencl, preset, d):
    """SPEC §5: identical codes except rounding ties (at most 16 per 128 tiles), decoded scale
    products within rtol 1e-3, the same call twice bit-identical; decoding of the same records
    equal on both backends."""
    group = next(p["group"] for p in kvarn_cl.presets() if p["name"] == preset)
    rng = np.random.default_rng(d + group)
    tiles = 8
    k, v = kv_with_outliers(rng, (tiles * group, d))
    want = kvarn_cl.quantize(k, v, preset=preset, backend=cpu)
    got = kvarn_cl.quantize(k, v, preset=preset, backend=opencl)
    assert got.shape == want.shape
    differing = compare_records(got, want, preset, d)
    assert differing <= max(1, 16 * tiles // 128), "%d codes differ in %d tiles" % (differing, tiles)
    np.testing.assert_array_equal(kvarn_cl.quantize(k, v, preset=preset, backend=opencl), got)
    for rotated in (False, True):
        a = kvarn_cl.dequantize(want, preset=preset, rotated=rotated, backend=cpu)
        b = kvarn_cl.dequantize(want, preset=preset, rotated=rotated, backend=opencl)
        # fp16 outputs: the decode is the same fp32 arithmetic; rotating back may round differently
        for x, y in zip(a, b):
            np.testing.assert_allclose(x.astype(np.float32), y.astype(np.float32), rtol=2e-3,
                                       atol=1e-3 * float(np.abs(x).max()))


def test_round_trip_beats_plain_min_max(backend):
    """SPEC §5 sanity: N(0,1) with channels ×20 reconstructs better than plain per-row min/max."""
    rng = np.random.default_rng(7)
    k = rng.standard_normal((512, 128)).astype(np.float32)
    k[:, [3, 50, 97]] *= 20.0
    v = rng.standard_normal((512, 128)).astype(np.float32)
    rec = kvarn_cl.quantize(k, v, preset="k4v4_g128", backend=backend)
    kd, vd = kvarn_cl.dequantize(rec, preset="k4v4_g128", backend=backend, dtype=np.float32)

    def plain(x, bits):  # per token (row) over channels, no rotation, no normalization
        lo, hi = x.min(axis=1, keepdims=True), x.max(axis=1, keepdims=True)
        s = np.maximum((hi - lo) / (2 ** bits - 1), 1e-10)
        return np.clip(np.round((x - lo) / s), 0, 2 ** bits - 1) * s + lo

    rel = lambda a, b: np.linalg.norm(a - b) / np.linalg.norm(b)
    assert rel(kd, k) < rel(plain(k, 4), k)
    assert rel(vd, v) < 0.15


def test_no_copies(cpu):
    """Arrays are used in place: the C++ code reads the caller's memory (numpy, buffer protocol,
    DLPack) and writes results into the returned or the given array."""
    rng = np.random.default_rng(3)
    k, v = kv_with_outliers(rng, (256, 128))
    out = np.empty((2, 13824), np.uint8)
    res = kvarn_cl.quantize(k, v, backend=cpu, out=out)
    assert res is out
    addr = kvarn_cl._kvarn_cl._addresses()
    assert addr["quantize:k"] == k.ctypes.data
    assert addr["quantize:v"] == v.ctypes.data
    assert addr["quantize:out"] == out.ctypes.data
    np.testing.assert_array_equal(out, kvarn_cl.quantize(k, v, backend=cpu))
    res = kvarn_cl.quantize(k, v, backend=cpu)
    assert kvarn_cl._kvarn_cl._addresses()["quantize:out"] == res.ctypes.data

    class DLPackOnly:  # exposes nothing but DLPack
        def __init__(self, a):
            self.a = a

        def __dlpack__(self, *args, **kwargs):
            return self.a.__dlpack__(*args, **kwargs)

        def __dlpack_device__(self):
            return self.a.__dlpack_device__()

    kvarn_cl.quantize(memoryview(k), DLPackOnly(v), backend=cpu)
    addr = kvarn_cl._kvarn_cl._addresses()
    assert addr["quantize:k"] == k.ctypes.data
    assert addr["quantize:v"] == v.ctypes.data
    kd, vd = kvarn_cl.dequantize(res, backend=cpu)
    addr = kvarn_cl._kvarn_cl._addresses()
    assert addr["dequantize:records"] == res.ctypes.data
    assert addr["dequantize:k_out"] == kd.ctypes.data and addr["dequantize:v_out"] == vd.ctypes.data


def test_bad_input(cpu):
    rng = np.random.default_rng(4)
    k, v = kv_with_outliers(rng, (128, 128))
    E = kvarn_cl.InvalidArgument
    with pytest.raises(E, match=r"quantize: k: dtype float64 is not supported"):
        kvarn_cl.quantize(k.astype(np.float64), v, backend=cpu)
    with pytest.raises(E, match=r"quantize: v: dtype int32"):
        kvarn_cl.quantize(k, v.astype(np.int32), backend=cpu)
    with pytest.raises(E, match=r"quantize: k: the array is not C-contiguous"):
        kvarn_cl.quantize(np.asfortranarray(k), v, backend=cpu)
    with pytest.raises(E, match=r"not C-contiguous"):
        kvarn_cl.quantize(np.zeros((128, 256), np.float16)[:, ::2], v, backend=cpu)
    with pytest.raises(E, match=r"quantize: k: expected a CPU array .* got list"):
        kvarn_cl.quantize(k.tolist(), v, backend=cpu)
    with pytest.raises(E, match=r"k has shape \(128,\)"):
        kvarn_cl.quantize(k[0], v[0], backend=cpu)
    with pytest.raises(E, match=r"k has shape \(128, 128\) but v has shape \(64, 128\)"):
        kvarn_cl.quantize(k, v[:64], backend=cpu)
    with pytest.raises(E, match=r"100 tokens .* not a multiple of the tile size G = 128"):
        kvarn_cl.quantize(k[:100], v[:100], backend=cpu)
    with pytest.raises(E, match=r"head_dim \(k.shape\[-1\]\) 96"):
        kvarn_cl.quantize(k[:, :96].copy(), v[:, :96].copy(), backend=cpu)
    with pytest.raises(E, match=r"k8v8"):
        kvarn_cl.quantize(k, v, preset="k8v8", backend=cpu)
    with pytest.raises(E, match=r"backend"):
        kvarn_cl.quantize(k, v, backend="gpu")
    with pytest.raises(E, match=r"sinkhorn_iters 99"):
        kvarn_cl.quantize(k, v, backend=cpu, sinkhorn_iters=99)
    ro = np.empty((1, 13824), np.uint8)
    ro.flags.writeable = False
    with pytest.raises(E, match=r"out: the array is read-only"):
        kvarn_cl.quantize(k, v, backend=cpu, out=ro)
    with pytest.raises(E, match=r"out has shape \(2, 13824\), expected \(1, 13824\)"):
        kvarn_cl.quantize(k, v, backend=cpu, out=np.empty((2, 13824), np.uint8))
    for bad, what in ((np.nan, "nan"), (np.inf, "inf")):
        kb = k.copy()
        kb[17, 5] = bad
        with pytest.raises(kvarn_cl.NonFiniteInput, match=r"quantize: k\[17\]\[5\] is " + what):
            kvarn_cl.quantize(kb, v, backend=cpu)
    with pytest.raises(ValueError):  # NonFiniteInput is also a ValueError
        kvarn_cl.quantize(k, np.full_like(v, np.nan), backend=cpu)
    # finite, but the rotation overflows fp16: 60000 in every channel has L2 norm 678823
    with pytest.raises(kvarn_cl.NonFiniteInput, match=r"overflows fp16 after the Hadamard rotation"):
        kvarn_cl.quantize(np.full((128, 128), 60000, np.float32), v, backend=cpu)
    rec = kvarn_cl.quantize(k, v, backend=cpu)
    with pytest.raises(E, match=r"records: dtype float32"):
        kvarn_cl.dequantize(rec.astype(np.float32), backend=cpu)
    with pytest.raises(E, match=r"13823 bytes, not a multiple of the record size 13824"):
        kvarn_cl.dequantize(rec.reshape(-1)[:-1], head_dim=128, backend=cpu)
    with pytest.raises(E, match=r"dtype float64 is not supported"):
        kvarn_cl.dequantize(rec, backend=cpu, dtype=np.float64)
    bad = rec.copy()
    s_col_k = 128 * 128 * 4 // 8  # first fp16 scale of the record
    bad[0, s_col_k:s_col_k + 2] = np.frombuffer(np.float16(np.nan).tobytes(), np.uint8)
    with pytest.raises(kvarn_cl.CorruptRecord, match=r"dequantize: records: corrupt record: s_col_K\[0\]|not finite"):
        kvarn_cl.dequantize(bad, backend=cpu)
