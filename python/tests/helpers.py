"""numpy references shared by the tests: exact attention and record comparison (SPEC §5)."""

import numpy as np

import kvarn_ref


def exact_attention(q, k, v, scale=None):
    """One query token: q [Hq][D], k, v [T][Hk][D] (any one frame) -> [Hq][D], in float64.
    Query head h reads KV head h // (Hq / Hk)."""
    q = np.asarray(q, np.float64)
    k = np.asarray(k, np.float64)
    v = np.asarray(v, np.float64)
    hq, d = q.shape
    hk = k.shape[1]
    scale = 1.0 / np.sqrt(d) if scale is None else scale
    out = np.empty((hq, d))
    for h in range(hq):
        kh, vh = k[:, h // (hq // hk)], v[:, h // (hq // hk)]
        s = kh @ q[h] * scale
        p = np.exp(s - s.max())
        out[h] = (p / p.sum()) @ vh
    return out


def cache_reference_attention(snapshot, q, preset, d):
    """Attention over exactly what the cache holds, decoded in fp32 (SPEC §4-5): records through
    the independent reference decoder, sink and tail as stored, query rotated, output rotated back."""
    hk = snapshot["sink_k"].shape[0]
    ks, vs = [snapshot["sink_k"].astype(np.float32)], [snapshot["sink_v"].astype(np.float32)]
    tiles_k, tiles_v = [], []
    for tile in snapshot["records"]:
        per_head = [kvarn_ref.decode_fields(kvarn_ref.parse_record(tile[h].tobytes(), preset, d), "rotated")
                    for h in range(hk)]
        tiles_k.append(np.stack([p[0] for p in per_head]))
        tiles_v.append(np.stack([p[1] for p in per_head]))
    k = np.concatenate(ks + tiles_k + [snapshot["tail_k"].astype(np.float32)], axis=1)
    v = np.concatenate(vs + tiles_v + [snapshot["tail_v"].astype(np.float32)], axis=1)
    q_rot = kvarn_ref.fwht(np.asarray(q, np.float32))
    out_rot = exact_attention(q_rot, k.transpose(1, 0, 2), v.transpose(1, 0, 2))
    return kvarn_ref.fwht(out_rot.astype(np.float32)).astype(np.float64)


def compare_records(got, want, preset, d):
    """Records of two backends (same input): returns the number of differing codes; asserts the
    decoded scale products of SPEC §5 agree within rtol 1e-3, plus one fp16 rounding step of
    each of the two stored vectors (2 x 2^-11: fp32 values a hair apart may round to neighbouring
    fp16 values)."""
    got = np.asarray(got, np.uint8).reshape(-1, kvarn_ref.record_bytes(preset, d))
    want = np.asarray(want, np.uint8).reshape(got.shape)
    f32 = lambda a: a.astype(np.float32)
    differing = 0
    for a, b in zip(got, want):
        fa, fb = kvarn_ref.parse_record(a.tobytes(), preset, d), kvarn_ref.parse_record(b.tobytes(), preset, d)
        differing += int((fa["qK"] != fb["qK"]).sum() + (fa["qV"] != fb["qV"]).sum())
        for step, zero, col in (("s_col_k", "zp_k", "s_row_k"), ("s_row_v", "zp_v", "s_col_v")):
            for vec in (step, zero):
                pa = np.outer(f32(fa[vec]), f32(fa[col]))
                pb = np.outer(f32(fb[vec]), f32(fb[col]))
                np.testing.assert_allclose(pa, pb, rtol=1e-3 + 2 * 2.0 ** -11, atol=1e-7, err_msg=vec + " x " + col)
    return differing
