#!/usr/bin/env python3
"""Independent reference of the KVarN tile codec, SPEC.md §2, in Python + numpy.

Written from /work/shared/SPEC.md alone, never from the library's C++ code, so that
check_cli.py can catch a misreading of the contract in either implementation.

Precision (SPEC §2.2-2.4 say "compute in fp32"):
- every element-wise quantity (rotation butterflies, cur = M / exp(lc) / exp(lr), B, the row
  minimum/maximum, the rounding argument (b - lo) / scale, the folded scale products) is float32,
  with the operations in the order SPEC writes them;
- the transcendental functions (log, exp) and the standard deviations are evaluated in float64 and
  rounded once to float32, i.e. they are the correctly rounded fp32 values; a C++ fp32 code using
  logf/expf and any sane summation lands within an ulp or so of them;
- imbalance() is a float64 ratio of those float32 standard deviations (it only steers the `<=`
  choice of the best iteration).
fp16 conversion is numpy's float32 -> float16 cast, which rounds to nearest even (SPEC §6).
"""

import math

import numpy as np

F32 = np.float32

# SPEC §2.1: name -> (K bits, V bits, G tokens per tile)
PRESETS = {
    "k4v2_g128": (4, 2, 128),
    "k4v4_g128": (4, 4, 128),
    "k2v2_g128": (2, 2, 128),
    "k4v2_g64": (4, 2, 64),
    "k4v4_g64": (4, 4, 64),
}
HEAD_DIMS = (64, 128, 256)
DEFAULT_ITERS = 8
# Relative imbalance difference below which two iterations count as tied (fp32 noise is ~1e-7).
SELECTION_TIE_REL = 1e-6


# --- fp16 helpers -------------------------------------------------------------------------------

def to_f16(x):
    """float32 -> float16, round to nearest even."""
    return np.asarray(x, dtype=np.float32).astype(np.float16)


def f16_ordered(h):
    """fp16 values -> integers that are monotone in the value, so |a - b| counts ulps."""
    bits = np.asarray(h, dtype=np.float16).view(np.uint16).astype(np.int32)
    return np.where(bits & 0x8000, -(bits & 0x7FFF), bits)


# --- SPEC §2.2 rotation -------------------------------------------------------------------------

def fwht(x):
    """Normalized fast Walsh-Hadamard transform along the last axis, in float32.

    log2(n) butterfly stages (a, b) -> (a + b, a - b) with stride 1, 2, 4, ..., then the 1/sqrt(n)
    scale. The result equals x @ H with H = Sylvester Hadamard / sqrt(n) (checked in self_test)."""
    x = np.array(x, dtype=np.float32, copy=True)
    n = x.shape[-1]
    assert n & (n - 1) == 0, "length must be a power of two"
    lead = x.shape[:-1]
    h = 1
    while h < n:
        y = x.reshape(lead + (n // (2 * h), 2, h))
        a = y[..., 0, :].copy()
        b = y[..., 1, :].copy()
        y[..., 0, :] = a + b
        y[..., 1, :] = a - b
        x = y.reshape(lead + (n,))
        h *= 2
    return (x * F32(1.0 / math.sqrt(n))).astype(np.float32)


def hadamard(n):
    """The normalized Sylvester Hadamard matrix, built by the Kronecker recursion (for tests)."""
    h = np.array([[1.0]])
    while h.shape[0] < n:
        h = np.block([[h, h], [h, -h]])
    return h / math.sqrt(n)


def rotate(rows_f16):
    """fp16 rows (original frame) -> fp16 rows in the rotated frame (fp32 FWHT, then RNE)."""
    return to_f16(fwht(np.asarray(rows_f16, dtype=np.float16).astype(np.float32)))


# --- SPEC §2.3 variance normalization -----------------------------------------------------------

def _std(cur, axis):
    """Unbiased, mean-subtracted standard deviation, correctly rounded to float32."""
    return np.std(cur.astype(np.float64), axis=axis, ddof=1).astype(np.float32)


def _f32_log(x):
    return np.log(x.astype(np.float64)).astype(np.float32)


def _f32_exp(x):
    return np.exp(x.astype(np.float64)).astype(np.float32)


def imbalance(cur):
    col = _std(cur, 0).astype(np.float64)
    row = _std(cur, 1).astype(np.float64)
    return col.max() / max(col.min(), 1e-8) + row.max() / max(row.min(), 1e-8)


def _scaled(m, col_scale, row_scale):
    # M / exp(lc)[col] / exp(lr)[row], left to right, in float32
    return ((m / col_scale[None, :]) / row_scale[:, None]).astype(np.float32)


def normalize(m, iters=DEFAULT_ITERS, tie_rel=SELECTION_TIE_REL):
    """SPEC §2.3 on an R x C float32 matrix.

    Returns (bc [C], br [R], best iteration, alternates). alternates lists (bc, br, iteration) of
    the other iterations whose imbalance is within a relative tie_rel of the chosen one: in exact
    arithmetic such iterations can have EQUAL imbalance (when every row scale sits at the -0.3
    clamp, an iteration only moves a constant factor between lc and lr, and imbalance is scale
    invariant), so which one `<=` picks is decided by fp32 rounding noise. Any of them is a
    faithful encoding; check_cli.py accepts a record that matches one of them and counts it."""
    m = np.asarray(m, dtype=np.float32)
    rows, cols = m.shape
    lc = np.zeros(cols, dtype=np.float32)
    lr = np.zeros(rows, dtype=np.float32)
    best = imbalance(m)
    candidates = [(best, np.ones(cols, dtype=np.float32), np.ones(rows, dtype=np.float32), 0)]
    chosen = 0
    lo_std, hi_std = F32(1e-3), F32(1e3)
    lo_log, hi_log = F32(-0.3), F32(10.0)
    cur = m
    for it in range(1, iters + 1):
        lc = np.clip(lc + _f32_log(np.clip(_std(cur, 0), lo_std, hi_std)), lo_log, hi_log)
        lc = lc.astype(np.float32)
        cur = _scaled(m, _f32_exp(lc), _f32_exp(lr))
        lr = np.clip(lr + _f32_log(np.clip(_std(cur, 1), lo_std, hi_std)), lo_log, hi_log)
        lr = lr.astype(np.float32)
        cur = _scaled(m, _f32_exp(lc), _f32_exp(lr))
        value = imbalance(cur)
        candidates.append((value, _f32_exp(lc), _f32_exp(lr), it))
        if value <= best:  # ties go to the later iteration
            best = value
            chosen = it
    _, bc, br, _ = candidates[chosen]
    alternates = [(c[1], c[2], c[3]) for c in candidates
                  if c[3] != chosen and abs(c[0] - best) <= tie_rel * best]
    return bc, br, chosen, alternates


# --- SPEC §2.4 rounding -------------------------------------------------------------------------

def quantize_rows(b, bits):
    """Each row on its own: returns (codes uint8, lo f32, scale f32, pre-rounding values f32)."""
    b = np.asarray(b, dtype=np.float32)
    levels = F32((1 << bits) - 1)
    lo = b.min(axis=1)
    hi = b.max(axis=1)
    scale = np.maximum(((hi - lo) / levels).astype(np.float32), F32(1e-10)).astype(np.float32)
    x = ((b - lo[:, None]) / scale[:, None]).astype(np.float32)
    codes = np.clip(np.rint(x), 0, levels).astype(np.uint8)  # np.rint: round half to even
    return codes, lo, scale, x


# --- SPEC §2.5 packing and record layout --------------------------------------------------------

def pack(codes, bits):
    """rows x n codes -> rows x (n*bits/8) bytes; code c in byte c/P at shift (c mod P)*bits."""
    codes = np.asarray(codes, dtype=np.uint8)
    rows, n = codes.shape
    per = 8 // bits
    out = np.zeros((rows, n // per), dtype=np.uint8)
    for j in range(per):
        out |= (codes[:, j::per] << (j * bits)).astype(np.uint8)
    return out


def unpack(packed, n, bits):
    packed = np.asarray(packed, dtype=np.uint8)
    per = 8 // bits
    mask = (1 << bits) - 1
    codes = np.zeros((packed.shape[0], n), dtype=np.uint8)
    for j in range(per):
        codes[:, j::per] = (packed >> (j * bits)) & mask
    return codes


def layout(preset, d):
    """Field order, element count and element type of one record (SPEC §2.5)."""
    kb, vb, g = PRESETS[preset]
    return [
        ("k_codes", d * g * kb // 8, "u8"),
        ("s_col_k", d, "f16"),
        ("zp_k", d, "f16"),
        ("s_row_k", g, "f16"),
        ("v_codes", g * d * vb // 8, "u8"),
        ("s_col_v", d, "f16"),
        ("s_row_v", g, "f16"),
        ("zp_v", g, "f16"),
    ]


def record_bytes(preset, d):
    return sum(n * (2 if t == "f16" else 1) for _, n, t in layout(preset, d))


def parse_record(buf, preset, d):
    """bytes of one record -> dict of fields; codes unpacked to K [D][G] and V [G][D]."""
    kb, vb, g = PRESETS[preset]
    buf = np.frombuffer(bytes(buf), dtype=np.uint8)
    if buf.size != record_bytes(preset, d):
        raise ValueError("record of %d bytes, expected %d" % (buf.size, record_bytes(preset, d)))
    fields, at = {}, 0
    for name, n, t in layout(preset, d):
        size = n * (2 if t == "f16" else 1)
        raw = buf[at:at + size]
        fields[name] = raw.view("<f2").astype(np.float16) if t == "f16" else raw.copy()
        at += size
    fields["qK"] = unpack(fields["k_codes"].reshape(d, g * kb // 8), g, kb)
    fields["qV"] = unpack(fields["v_codes"].reshape(g, d * vb // 8), d, vb)
    return fields


# --- one tile ------------------------------------------------------------------------------------

def _encode_part(m, bits, bc, br):
    """Rounding and scale folding of one normalized part; returns the stored fields.

    For K (rows = channels) the row vectors are (s_col_K, zp_K) and the column vector s_row_K;
    for V (rows = tokens) they are (s_row_V, zp_V) and s_col_V."""
    codes, lo, scale, x = quantize_rows(_scaled(m, bc, br), bits)
    return {"codes": codes, "pre": x, "row_scale": to_f16(br * scale), "row_zero": to_f16(br * lo),
            "col_scale": to_f16(bc)}


def encode_tile(k_rot, v_rot, preset, iters=DEFAULT_ITERS):
    """G rotated fp16 rows of K and V -> (record bytes, diagnostics dict).

    diagnostics: "K" and "V" parts (codes, pre-rounding values, fp16 vectors) of the chosen
    iteration, "K_alt" / "V_alt" the same for iterations tied with it (see normalize())."""
    kb, vb, g = PRESETS[preset]
    k_rot = np.asarray(k_rot, dtype=np.float16)
    v_rot = np.asarray(v_rot, dtype=np.float16)
    assert k_rot.shape[0] == g and v_rot.shape == k_rot.shape
    if not (np.isfinite(k_rot).all() and np.isfinite(v_rot).all()):
        raise ValueError("non-finite input")

    diag = {}
    # K tile: rows = channels (D), columns = tokens (G); V tile: rows = tokens, columns = channels
    for part, m, bits in (("K", k_rot.astype(np.float32).T.copy(), kb),
                          ("V", v_rot.astype(np.float32), vb)):
        bc, br, it, alternates = normalize(m, iters)
        diag[part] = dict(_encode_part(m, bits, bc, br), iteration=it)
        diag[part + "_alt"] = [dict(_encode_part(m, bits, abc, abr), iteration=ait)
                               for abc, abr, ait in alternates]
    k, v = diag["K"], diag["V"]
    le = lambda a: np.asarray(a, dtype=np.float16).astype("<f2").tobytes()
    record = b"".join([pack(k["codes"], kb).tobytes(), le(k["row_scale"]), le(k["row_zero"]),
                       le(k["col_scale"]), pack(v["codes"], vb).tobytes(), le(v["col_scale"]),
                       le(v["row_scale"]), le(v["row_zero"])])
    return record, diag


# Record field names of each part's vectors (see _encode_part).
PART_FIELDS = {
    "K": {"codes": "qK", "row_scale": "s_col_k", "row_zero": "zp_k", "col_scale": "s_row_k"},
    "V": {"codes": "qV", "row_scale": "s_row_v", "row_zero": "zp_v", "col_scale": "s_col_v"},
}


def decode_fields(f, frame="original"):
    """Record fields -> K, V as float32 [G][D] (SPEC §2.4 decoding, fp32), rotated or original."""
    f32 = lambda a: np.asarray(a, dtype=np.float16).astype(np.float32)
    k = (f["qK"].astype(np.float32) * f32(f["s_col_k"])[:, None] + f32(f["zp_k"])[:, None])
    k = (k.astype(np.float32) * f32(f["s_row_k"])[None, :]).astype(np.float32).T
    v = (f["qV"].astype(np.float32) * f32(f["s_row_v"])[:, None] + f32(f["zp_v"])[:, None])
    v = (v.astype(np.float32) * f32(f["s_col_v"])[None, :]).astype(np.float32)
    if frame == "original":  # H is its own inverse
        k, v = fwht(k), fwht(v)
    return np.ascontiguousarray(k, dtype=np.float32), np.ascontiguousarray(v, dtype=np.float32)


# --- whole sequences (what `kvarn-cl quantize` does) -------------------------------------------

def quantize_sequence(k_f16, v_f16, preset, iters=DEFAULT_ITERS):
    """[T][D] fp16 original-frame K and V -> (records bytes, list of per-tile diagnostics)."""
    g = PRESETS[preset][2]
    t = k_f16.shape[0]
    assert t % g == 0
    kr, vr = rotate(k_f16), rotate(v_f16)
    out, diags = [], []
    for i in range(t // g):
        rec, diag = encode_tile(kr[i * g:(i + 1) * g], vr[i * g:(i + 1) * g], preset, iters)
        out.append(rec)
        diags.append(diag)
    return b"".join(out), diags


def dequantize_sequence(records, preset, d, frame="original"):
    """Records back to back -> K, V float32 [T][D]."""
    size = record_bytes(preset, d)
    assert len(records) % size == 0
    ks, vs = [], []
    for i in range(len(records) // size):
        k, v = decode_fields(parse_record(records[i * size:(i + 1) * size], preset, d), frame)
        ks.append(k)
        vs.append(v)
    return np.concatenate(ks), np.concatenate(vs)


# --- checks of the reference itself against SPEC facts ------------------------------------------

def self_test():
    rng = np.random.default_rng(1)
    for d in HEAD_DIMS:
        x = rng.standard_normal((5, d)).astype(np.float32)
        h = hadamard(d)
        assert np.allclose(h @ h, np.eye(d), atol=1e-12), "H.H != I"
        assert np.allclose(fwht(x), x.astype(np.float64) @ h, atol=1e-5), "FWHT != x.H"
        assert np.allclose(fwht(fwht(x)), x, atol=1e-5), "FWHT not an involution"
    # SPEC §2.5 sizes
    assert record_bytes("k4v2_g128", 128) == 13824
    assert record_bytes("k4v4_g128", 128) == 17920
    assert record_bytes("k4v2_g64", 128) == 7296
    # packing: the even index is the low nibble; 2-bit codes fill from the lowest bits
    assert pack(np.array([[1, 2]], np.uint8), 4)[0, 0] == 0x21
    assert pack(np.array([[1, 2, 3, 0]], np.uint8), 2)[0, 0] == 0b00111001
    for bits in (2, 4):
        c = rng.integers(0, 1 << bits, size=(3, 64)).astype(np.uint8)
        assert (unpack(pack(c, bits), 64, bits) == c).all()
    # round half to even in the quantizer: (0, 0.5, 1.5, 3) with 3 levels (2 bits) -> scale 1
    codes, _, _, _ = quantize_rows(np.array([[0.0, 0.5, 1.5, 2.5, 3.0]], np.float32), 2)
    assert codes.tolist() == [[0, 0, 2, 2, 3]], codes
    # SPEC §5 sanity: KVarN beats plain per-row min/max at the same bits on outlier data
    for preset in ("k4v2_g128", "k4v4_g64"):
        kb, vb, g = PRESETS[preset]
        k = rng.standard_normal((g, 128)).astype(np.float32)
        k[:, [3, 77]] *= 20
        kf = to_f16(k)
        rec, _ = quantize_sequence(kf, kf, preset)
        kh, _ = dequantize_sequence(rec, preset, 128)
        ref = kf.astype(np.float32)
        err = np.linalg.norm(kh - ref) / np.linalg.norm(ref)
        plain, lo, sc, _ = quantize_rows(ref.T, kb)  # per channel across tokens, no rotation
        naive = (plain * sc[:, None] + lo[:, None]).T
        err_naive = np.linalg.norm(naive - ref) / np.linalg.norm(ref)
        assert err < err_naive, (preset, err, err_naive)
    print("kvarn_ref self-test passed")


if __name__ == "__main__":
    self_test()
