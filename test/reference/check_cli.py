#!/usr/bin/env python3
"""Checks `kvarn-cl quantize` / `dequantize` against the independent reference kvarn_ref.py.

For every preset x head_dim 64/128/256 (or the --configs subset) it generates seeded fp16 keys and values with outlier
channels (a few tiles each), runs the CLI, and compares with the reference:

- record file size: exactly tiles x record bytes (no header, no padding);
- codes: equal, except at rounding ties. A code may differ only by 1, and only where the
  reference's pre-rounding value (b - lo) / scale lies within TIE_WINDOW of a .5 boundary; the
  number of such codes over the whole run may not exceed 16 per 128 tiles (SPEC §5), counted over
  all tiles of all configurations together;
- fp16 scale vectors (s_col_K, zp_K, s_row_K, s_col_V, s_row_V, zp_V): at most 1 ulp apart, where
  ulps are counted as the distance of the two fp16 bit patterns on the monotone integer line
  (so +0/-0 are 0 apart and a sign change counts through zero);
- round trip: `kvarn-cl dequantize` of the CLI's own records (so ties do not matter) against the
  reference's decoding of the same records: rotated frame (--rotated) within 1 fp16 ulp, original
  frame within 1 fp16 ulp or 1e-5 of the row's largest magnitude (the inverse FWHT sums in fp32 in
  an order the contract does not fix, and near-zero outputs can lose more than an ulp to that).

Exit status 0 when every check passes; failures are listed. Run with --kvarn-cl PATH.
"""

import argparse
import atexit
import os
import shutil
import subprocess
import sys
import tempfile

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import kvarn_ref as ref  # noqa: E402

TIE_WINDOW = 1e-3
TIES_PER_128_TILES = 16


def generate(tokens, d, seed):
    """fp16 K, V [T][D] with outlier channels, channel offsets and per-token loudness."""
    rng = np.random.default_rng(seed)
    k = rng.standard_normal((tokens, d)).astype(np.float32)
    v = rng.standard_normal((tokens, d)).astype(np.float32)
    k_out = rng.choice(d, size=3, replace=False)
    v_out = rng.choice(d, size=2, replace=False)
    k[:, k_out] = k[:, k_out] * 20.0 + rng.choice([-30.0, 30.0], size=3)
    v[:, v_out] *= 20.0
    k += 0.5 * rng.standard_normal(d).astype(np.float32)  # per-channel offsets
    v *= np.exp(0.3 * rng.standard_normal((tokens, 1))).astype(np.float32)
    return ref.to_f16(k), ref.to_f16(v)


def write_f16(path, a):
    np.asarray(a, dtype=np.float16).astype("<f2").tofile(path)


def read_f16(path, d):
    return np.fromfile(path, dtype="<f2").astype(np.float16).reshape(-1, d)


def run(cmd):
    p = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    if p.returncode != 0:
        raise RuntimeError("%s exited %d: %s" % (" ".join(cmd), p.returncode, p.stderr.strip()))


def ulps(a, b):
    return np.abs(ref.f16_ordered(a) - ref.f16_ordered(b))


class Tally:
    def __init__(self):
        self.failures = []
        self.tiles = 0
        self.tie_codes = 0
        self.scale_1ulp = 0
        self.scale_values = 0
        self.selection_ties = 0
        self.errors = []

    def fail(self, what):
        self.failures.append(what)


def compare_part(fields, part, cand):
    """One part (K or V) of a CLI record against one reference encoding of it."""
    names = ref.PART_FIELDS[part]
    out = {"problems": [], "tie_codes": 0, "scale_1ulp": 0, "scale_values": 0}
    got_codes, want_codes = fields[names["codes"]], cand["codes"]
    differ = got_codes != want_codes
    if differ.any():
        x = cand["pre"][differ]
        near_tie = np.abs((x - np.floor(x)) - 0.5) <= TIE_WINDOW
        off_by_one = np.abs(got_codes[differ].astype(int) - want_codes[differ].astype(int)) == 1
        bad = ~(near_tie & off_by_one)
        if bad.any():
            out["problems"].append("%d of %d codes differ away from a rounding tie (first "
                                   "pre-rounding value %.6f, iteration %d)" % (
                                       int(bad.sum()), int(differ.sum()), float(x[bad][0]),
                                       cand["iteration"]))
        out["tie_codes"] = int(differ.sum())
    for key in ("row_scale", "row_zero", "col_scale"):
        f = names[key]
        u = ulps(fields[f], cand[key])
        out["scale_values"] += u.size
        out["scale_1ulp"] += int((u == 1).sum())
        if (u > 1).any():
            j = int(np.argmax(u))
            out["problems"].append("%s[%d] = %r, reference %r (%d ulps, iteration %d)" % (
                f, j, float(fields[f][j]), float(cand[key][j]), int(u[j]), cand["iteration"]))
    return out


def check_config(exe, backend, preset, d, tiles, seed, work, tally):
    kb, vb, g = ref.PRESETS[preset]
    name = "%s D=%d" % (preset, d)
    k, v = generate(tiles * g, d, seed)
    kp, vp, rp = (os.path.join(work, n) for n in ("k.f16", "v.f16", "r.kvarn"))
    write_f16(kp, k)
    write_f16(vp, v)
    run([exe, "quantize", "--preset", preset, "--head-dim", str(d), "--backend", backend,
         "--k", kp, "--v", vp, "--out", rp])
    got = open(rp, "rb").read()
    size = ref.record_bytes(preset, d)
    if len(got) != tiles * size:
        tally.fail("%s: record file has %d bytes, expected %d x %d" % (name, len(got), tiles, size))
        return
    want, diags = ref.quantize_sequence(k, v, preset)
    tally.tiles += tiles

    for i in range(tiles):
        fg = ref.parse_record(got[i * size:(i + 1) * size], preset, d)
        for part in ("K", "V"):
            candidates = [diags[i][part]] + diags[i][part + "_alt"]
            results = [compare_part(fg, part, c) for c in candidates]
            ok = [r for r in results if not r["problems"]]
            if not ok:
                for p in results[0]["problems"]:
                    tally.fail("%s tile %d %s: %s" % (name, i, part, p))
                continue
            r = ok[0]
            if r is not results[0]:
                tally.selection_ties += 1
            tally.tie_codes += r["tie_codes"]
            tally.scale_1ulp += r["scale_1ulp"]
            tally.scale_values += r["scale_values"]

    # Round trip through the CLI's decoder against the reference's decoding of the same records.
    for frame in ("rotated", "original"):
        ko, vo = os.path.join(work, "k.out"), os.path.join(work, "v.out")
        cmd = [exe, "dequantize", "--preset", preset, "--head-dim", str(d), "--backend", backend,
               "--in", rp, "--k-out", ko, "--v-out", vo]
        run(cmd + (["--rotated"] if frame == "rotated" else []))
        k_ref, v_ref = ref.dequantize_sequence(got, preset, d, frame)
        for label, out, exp in (("K", read_f16(ko, d), k_ref), ("V", read_f16(vo, d), v_ref)):
            if out.shape != exp.shape:
                tally.fail("%s %s frame: %s output shape %s, expected %s" % (
                    name, frame, label, out.shape, exp.shape))
                continue
            u = ulps(out, ref.to_f16(exp))
            if frame == "rotated":
                bad = u > 1
            else:
                slack = 1e-5 * np.abs(exp).max(axis=1, keepdims=True)
                bad = (u > 1) & (np.abs(out.astype(np.float32) - exp) > slack)
            if bad.any():
                t, c = np.argwhere(bad)[0]
                tally.fail("%s %s frame: %d %s values differ from the reference decode (first at "
                           "token %d channel %d: %r vs %r)" % (name, frame, int(bad.sum()), label,
                                                              t, c, float(out[t, c]),
                                                              float(exp[t, c])))
        if frame == "original":  # sanity: the codec reconstructs the input at all
            # bounds well above what the codec achieves on this data (printed with --verbose)
            bound = {2: 0.5, 4: 0.15}
            for label, out, x, bits in (("K", read_f16(ko, d), k, kb), ("V", read_f16(vo, d), v, vb)):
                xf = x.astype(np.float64)
                err = np.linalg.norm(out.astype(np.float64) - xf) / np.linalg.norm(xf)
                tally.errors.append((name, label, err))
                if not err < bound[bits]:
                    tally.fail("%s: %s reconstruction error %.4f >= %.2f" % (
                        name, label, err, bound[bits]))


def reference_attention(q, k, v, preset, hq, hk, d):
    """SPEC §3-4 semantics over a fresh one-sequence cache, computed from the reference codec.

    The first G tokens are the fp16 sink, each complete tile after them a record, the rest the
    fp16 tail (all rotated). The query is rotated in fp32, scores use scale 1/sqrt(D), softmax and
    sums run in float64 over the decoded fp32 rows, and the output is rotated back."""
    g = ref.PRESETS[preset][2]
    t = k.shape[0]
    out = np.zeros((hq, d), dtype=np.float64)
    for h in range(hk):
        kr, vr = ref.rotate(k[:, h, :]), ref.rotate(v[:, h, :])
        keys = kr.astype(np.float32).copy()
        vals = vr.astype(np.float32).copy()
        tiles = max(0, (t - g) // g)
        for i in range(tiles):
            rows = slice(g + i * g, g + (i + 1) * g)
            rec, _ = ref.encode_tile(kr[rows], vr[rows], preset)
            keys[rows], vals[rows] = ref.decode_fields(ref.parse_record(rec, preset, d), "rotated")
        for j in range(hq // hk):
            qh = h * (hq // hk) + j
            qr = ref.fwht(q[qh].astype(np.float32)).astype(np.float64)
            s = keys.astype(np.float64) @ qr / np.sqrt(d)
            p = np.exp(s - s.max())
            p /= p.sum()
            out[qh] = p @ vals.astype(np.float64)
    return ref.fwht(out.astype(np.float32)).astype(np.float64)


def check_attend(exe, backend, work, tally, seed):
    """kvarn-cl attend (fused and materialize) against reference_attention."""
    rng = np.random.default_rng(seed)
    cases = [("k4v2_g128", 128, 8, 2, 1), ("k4v2_g128", 128, 8, 2, 133), ("k4v4_g64", 64, 4, 4, 64 * 4 + 9),
             ("k4v2_g128", 256, 2, 1, 128 * 3 + 50), ("k2v2_g128", 64, 4, 1, 128 * 2)]
    bounds = {"fused": 1e-4, "materialize": 2e-3}  # SPEC §5: fused ~1e-4 of the decoded cache
    for preset, d, hq, hk, t in cases:
        name = "attend %s D=%d HQ=%d HK=%d T=%d" % (preset, d, hq, hk, t)
        q = ref.to_f16(rng.standard_normal((hq, d)))
        k = rng.standard_normal((t, hk, d)).astype(np.float32)
        k[:, :, 5] = k[:, :, 5] * 10 + 8  # an outlier channel
        k = ref.to_f16(k)
        v = ref.to_f16(rng.standard_normal((t, hk, d)) * np.exp(0.3 * rng.standard_normal((t, 1, 1))))
        paths = {n: os.path.join(work, n) for n in ("q.f16", "k.f16", "v.f16", "o.f32")}
        write_f16(paths["q.f16"], q)
        write_f16(paths["k.f16"], k)
        write_f16(paths["v.f16"], v)
        want = reference_attention(q, k, v, preset, hq, hk, d)
        for path, bound in bounds.items():
            try:
                run([exe, "attend", "--preset", preset, "--head-dim", str(d), "--q-heads", str(hq),
                     "--kv-heads", str(hk), "--q", paths["q.f16"], "--k", paths["k.f16"], "--v",
                     paths["v.f16"], "--out", paths["o.f32"], "--backend", backend, "--path", path,
                     "--recent-tokens", "0"])  # reference_attention quantizes every complete tile
            except RuntimeError as e:
                tally.fail("%s %s: %s" % (name, path, e))
                continue
            got = np.fromfile(paths["o.f32"], dtype="<f4").astype(np.float64)
            if got.size != hq * d:
                tally.fail("%s %s: output has %d values, expected %d" % (name, path, got.size, hq * d))
                continue
            err = np.linalg.norm(got - want.ravel()) / np.linalg.norm(want)
            tally.errors.append((name + " " + path, "O", err))
            if not err <= bound:
                tally.fail("%s %s: relative error %.2e against the reference > %.0e" % (
                    name, path, err, bound))


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--kvarn-cl", required=True, help="path of the kvarn-cl program")
    ap.add_argument("--backend", default="cpu", help="backend for the CLI runs (default cpu)")
    ap.add_argument("--tiles", type=int, default=3, help="tiles per configuration (default 3)")
    ap.add_argument("--seed", type=int, default=20240611)
    ap.add_argument("--verbose", action="store_true", help="print reconstruction errors")
    ap.add_argument("--no-attend", action="store_true", help="skip the kvarn-cl attend checks")
    ap.add_argument("--configs", default="",
                    help="comma-separated preset:head_dim pairs to check (default: every preset x "
                         "every head_dim)")
    args = ap.parse_args()
    if args.backend != "cpu" and "POCL_CACHE_DIR" not in os.environ:
        # One PoCL kernel cache for this test process and the kvarn-cl runs it starts, so PoCL
        # compiles each program once instead of once per kvarn-cl run.
        os.environ["POCL_CACHE_DIR"] = tempfile.mkdtemp(prefix="kvarn_cl_pocl_cache_")
        atexit.register(shutil.rmtree, os.environ["POCL_CACHE_DIR"], True)

    ref.self_test()
    tally = Tally()
    with tempfile.TemporaryDirectory(prefix="kvarn_check_cli_") as work:
        # Seeds follow the position in the full preset x head_dim grid, so a subset checks the
        # same data as the full run does for those configurations.
        grid = [(p, d) for p in ref.PRESETS for d in ref.HEAD_DIMS]
        wanted = grid
        if args.configs:
            wanted = []
            for item in args.configs.split(","):
                preset, _, d = item.partition(":")
                if (preset, int(d) if d.isdigit() else -1) not in grid:
                    ap.error("--configs: %r is not a preset:head_dim of %s x %s" % (
                        item, "/".join(ref.PRESETS), "/".join(map(str, ref.HEAD_DIMS))))
                wanted.append((preset, int(d)))
        for i, (preset, d) in enumerate(grid):
            if (preset, d) not in wanted:
                continue
            try:
                check_config(args.kvarn_cl, args.backend, preset, d, args.tiles, args.seed + 1 + i,
                             work, tally)
            except RuntimeError as e:
                tally.fail("%s D=%d: %s" % (preset, d, e))
        if not args.no_attend:
            check_attend(args.kvarn_cl, args.backend, work, tally, args.seed)
    allowed = TIES_PER_128_TILES * tally.tiles / 128.0
    if tally.tie_codes > allowed:
        tally.fail("%d codes differ at rounding ties over %d tiles; at most %.1f allowed "
                   "(16 per 128 tiles)" % (tally.tie_codes, tally.tiles, allowed))
    print("kvarn-cl --backend %s vs reference: %d tiles, %d codes differ at rounding ties (allowed "
          "%.1f), %d of %d scale values 1 ulp apart, %d tile parts matched an iteration tied with "
          "the reference's choice" % (args.backend, tally.tiles, tally.tie_codes, allowed,
                                      tally.scale_1ulp, tally.scale_values, tally.selection_ties))
    if args.verbose:
        for name, label, err in tally.errors:
            print("  %-16s %s relative error %.2e" % (name, label, err))
    for f in tally.failures:
        print("FAIL: " + f)
    print("%d passed, %d failed" % (1 if not tally.failures else 0, 1 if tally.failures else 0))
    return 1 if tally.failures else 0


if __name__ == "__main__":
    sys.exit(main())
