#!/usr/bin/env python3
"""A toy decode loop on a KVarN cache: prefill a prompt's keys and values, then decode token by
token, and print what the cache saves and how far its attention is from numpy's exact attention.

    pip install .                          # from the repository root
    python examples/decode_loop.py                  # real SmolLM2 rows (test/data), backend auto
    python examples/decode_loop.py --data random --backend cpu   # random K/V, outlier channels

The real data are post-RoPE keys and values of SmolLM2-135M (head_dim 64, test/data/README.md),
stored there Hadamard-rotated; they are rotated back here, since the cache takes model output.
Queries are random (the files hold no queries): the printed attention error is a stress figure of
the codec, not a model's accuracy (see the closing lines it prints). What a model does with a KVarN
cache (next-token agreement, KL, memory) is what examples/transformers_generate.py measures.

Columns: step / tokens: decode step and sequence length; tiles: complete tiles stored as records;
fp16 bytes: K+V of this sequence in fp16; held bytes: what the cache holds for it (records plus the
fp16 sink and tail rows); saved: their ratio; rel.err: ||o - o_exact|| / ||o_exact|| of the cache's
attention output against exact fp64 attention over the original rows; fp16 err: the same for plain
fp16 K/V (the floor any fp16 cache has).
"""

import argparse
import glob
import os
import time

import numpy as np

import kvarn_cl


def hadamard_rotate(x):
    """x · H with H the normalized Sylvester Hadamard matrix (its own inverse), along the last axis."""
    x = np.array(x, dtype=np.float32)
    n, h = x.shape[-1], 1
    while h < n:
        y = x.reshape(x.shape[:-1] + (n // (2 * h), 2, h))
        a, b = y[..., 0, :].copy(), y[..., 1, :].copy()
        y[..., 0, :], y[..., 1, :] = a + b, a - b
        h *= 2
    return x / np.float32(np.sqrt(n))


def random_kv(rng, tokens, kv_heads, d):
    """[tokens][Hk][D] keys with a few loud channels (as real keys have), values per-token scaled."""
    k = rng.standard_normal((tokens, kv_heads, d)).astype(np.float32)
    k[..., rng.choice(d, 4, replace=False)] *= 8.0
    v = rng.standard_normal((tokens, kv_heads, d)).astype(np.float32)
    v *= np.exp(0.3 * rng.standard_normal((tokens, kv_heads, 1))).astype(np.float32)
    return k, v


def real_kv(tokens, kv_heads):
    """Real rows from test/data/*.kv16 (128 tokens x 64 fp16 keys, then values, rotated), cycled
    to `tokens` rows per head; head h starts at a different file."""
    here = os.path.dirname(os.path.abspath(__file__))
    files = sorted(glob.glob(os.path.join(here, "..", "test", "data", "*.kv16")))
    if not files:
        raise SystemExit("no test/data/*.kv16 files next to this example")
    ks, vs = [], []
    for f in files:
        raw = np.fromfile(f, dtype="<f2").reshape(2, 128, 64).astype(np.float32)
        ks.append(hadamard_rotate(raw[0]))
        vs.append(hadamard_rotate(raw[1]))
    k = np.empty((tokens, kv_heads, 64), np.float32)
    v = np.empty_like(k)
    for h in range(kv_heads):
        order = [(h + i) % len(files) for i in range(len(files))]
        allk, allv = np.concatenate([ks[i] for i in order]), np.concatenate([vs[i] for i in order])
        idx = np.arange(tokens) % len(allk)
        k[:, h], v[:, h] = allk[idx], allv[idx]
    return k, v


def exact_attention(q, k, v):
    """q [Hq][D], k, v [T][Hk][D] -> [Hq][D] in float64 (query head h reads KV head h // (Hq/Hk))."""
    hq, d = q.shape
    group = hq // k.shape[1]
    out = np.empty((hq, d))
    for h in range(hq):
        s = k[:, h // group].astype(np.float64) @ q[h].astype(np.float64) / np.sqrt(d)
        p = np.exp(s - s.max())
        out[h] = (p / p.sum()) @ v[:, h // group].astype(np.float64)
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", choices=["real", "random"], default="real",
                    help="real: SmolLM2-135M rows of test/data (D = 64); random: D = 128")
    ap.add_argument("--backend", default="auto", help="cpu, opencl or auto (default)")
    ap.add_argument("--preset", default="k4v2_g128", choices=[p["name"] for p in kvarn_cl.presets()])
    ap.add_argument("--prompt", type=int, default=1000, help="prompt tokens (default 1000)")
    ap.add_argument("--steps", type=int, default=64, help="decode steps (default 64)")
    ap.add_argument("--kv-heads", type=int, default=2)
    ap.add_argument("--q-heads", type=int, default=8)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()

    rng = np.random.default_rng(args.seed)
    d = 64 if args.data == "real" else 128
    total = args.prompt + args.steps
    k_all, v_all = (real_kv(total, args.kv_heads) if args.data == "real"
                    else random_kv(rng, total, args.kv_heads, d))

    backend = kvarn_cl.Backend(args.backend)
    print("kvarn_cl %s on %s%s" % (kvarn_cl.version(), backend.name,
                                   " (%s)" % backend.fallback_reason if backend.fallback_reason else ""))
    cache = kvarn_cl.KVCache(args.preset, layers=1, kv_heads=args.kv_heads, head_dim=d,
                             max_tokens=total, backend=backend)
    seq = cache.add_sequence()
    t0 = time.perf_counter()
    cache.append(seq, 0, k_all[:args.prompt], v_all[:args.prompt])  # prefill
    print("prefill: %d tokens of %d KV heads, D = %d, %s, %.1f ms%s"
          % (args.prompt, args.kv_heads, d, args.preset, 1e3 * (time.perf_counter() - t0),
             " (the first OpenCL calls include building the kernels)" if backend.is_opencl else ""))
    print("%6s %6s %8s %12s %12s %8s %11s %11s" % ("step", "tokens", "tiles", "fp16 bytes",
                                                  "held bytes", "saved", "rel.err", "fp16 err"))
    errors = []
    for step in range(args.steps):
        t = args.prompt + step
        cache.append(seq, 0, k_all[t:t + 1], v_all[t:t + 1])  # one decode token
        q = (2.0 * rng.standard_normal((1, args.q_heads, d))).astype(np.float32)
        out = cache.attend(0, q, seqs=[seq])[0]
        exact = exact_attention(q[0], k_all[:t + 1], v_all[:t + 1])
        fp16 = exact_attention(q[0], k_all[:t + 1].astype(np.float16), v_all[:t + 1].astype(np.float16))
        err = np.linalg.norm(out - exact) / np.linalg.norm(exact)
        errors.append(err)
        if step % 16 == 0 or step == args.steps - 1:
            tiles = cache.quantized_tiles(seq)
            fp16_bytes = (t + 1) * args.kv_heads * d * 2 * 2
            # what this sequence occupies: its records plus its fp16 sink and tail rows
            held = tiles * args.kv_heads * cache.record_bytes + (t + 1 - tiles * cache.group) * args.kv_heads * d * 4
            print("%6d %6d %8d %12d %12d %7.2fx %11.2e %11.2e" % (
                step, t + 1, tiles, fp16_bytes, held, fp16_bytes / held, err,
                np.linalg.norm(fp16 - exact) / np.linalg.norm(exact)))
    m = cache.memory_report()
    print("mean relative attention error over %d steps: %.3e (exact fp32 attention = 0)"
          % (args.steps, float(np.mean(errors))))
    print("  The queries are random (2*N(0,1)); against keys with loud channels they make attention\n"
          "  nearly one-hot, so a single flipped arg-max dominates this figure: it stresses the codec\n"
          "  and says nothing about a model's output. For that, run examples/transformers_generate.py\n"
          "  (pip install '.[hf]'): next-token agreement, KL and memory on SmolLM2-135M with real queries.")
    print("cache allocation (every pool, sized for max_tokens): %d bytes; records in use %d bytes"
          % (m["total"], m["records_in_use"]))


if __name__ == "__main__":
    main()
