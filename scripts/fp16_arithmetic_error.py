#!/usr/bin/env python3
"""What fp16 arithmetic would cost the fused decode in accuracy (issue 17 item 4, docs/PORTABILITY.md).

The two products of SPEC §4 -- scores = Σ_d (q·s_col_K)[d]·codeK[d,t] and out = Σ_t (p·s_row_V)[t]·codeV[t,d]
-- are simulated for one KV head (4 query heads, D 128) over random codes and log-normal scales, in
float64 (the truth) and in the arithmetic an fp16 kernel would use:

  fp32 products, fp32 sums   what the portable kernels do today (the codes are exact in any format)
  fp16 products, fp32 sums   the operand (q·s_col_K, p·s_row_V) rounded to half, each product
                             rounded to half, then added in fp32: as accurate as fp16 gets, but a
                             product in half plus a conversion plus an fp32 add per element is more
                             work than one fp32 multiply-add, so it cannot be faster
  fp16 sums of N             packed half2 multiply-adds over runs of N elements, each run then added
                             into fp32: where a device's 2x fp16 rate would pay off (N >= 4)
  fp16 throughout            half products and half sums

and the error is max |out - truth| / max |truth| per KV head, the worst of the trials, against the
1e-4 bar of SPEC §5 for attention from records. Beside it, what each costs in issue slots per
element against one fp32 multiply-add, on a device whose half2 instructions issue at its fp32 rate
(twice the fp16 flops): a run of N packed multiply-adds covers 2N elements, and closing a run
costs two conversions and two fp32 adds, (N + 4) / 2N slots per element; "fp16 products, fp32
sums" is N = 1 and fp16 throughout has no fp32 step (0.5). Only a value below 1 could be faster.
Needs numpy; deterministic (fixed seed).

Usage: fp16_arithmetic_error.py [--tokens T ...] [--trials N]
"""

import argparse

import numpy as np

D, HEADS = 128, 4


def run_sum(a, codes, run, exact):
    """Σ_i a[:, i] * codes[i] with products in a's type, runs of `run` summed in that type and the
    runs summed in fp32 (float64 when exact); run 0 means one run over everything."""
    acc_type = np.float64 if exact else np.float32
    acc = np.zeros((a.shape[0], codes.shape[1]), acc_type)
    part = None
    n = a.shape[1]
    for i in range(n):
        prod = a[:, i:i + 1] * codes[i].astype(a.dtype)
        part = prod if part is None else (part + prod).astype(a.dtype)
        if (run and (i + 1) % run == 0) or i == n - 1:
            acc = (acc + part.astype(acc_type)).astype(acc_type)
            part = None
    return acc.astype(np.float64)


def attend(case, operand_type, run):
    q, code_k, code_v, s_col_k, s_row_k, zp_k, s_col_v, s_row_v, zp_v = case
    exact = operand_type is np.float64
    a = (q * s_col_k).astype(operand_type)
    s = run_sum(a, code_k, run, exact) + (q.astype(np.float64) @ zp_k)[:, None]
    s = s * s_row_k / np.sqrt(D)
    p = np.exp(s - s.max(axis=1, keepdims=True))
    l = p.sum(axis=1, keepdims=True)
    w = (p * s_row_v).astype(operand_type)
    o = run_sum(w, code_v, run, exact)
    return (o + (p @ zp_v)[:, None]) * s_col_v / l


def make_case(rng, tokens):
    return (rng.standard_normal((HEADS, D)).astype(np.float32),
            rng.integers(0, 16, (D, tokens)), rng.integers(0, 4, (tokens, D)),
            np.exp(rng.normal(0.0, 0.5, D)), np.exp(rng.normal(-2.0, 0.3, tokens)),
            rng.normal(-7.5, 0.5, D),
            np.exp(rng.normal(0.0, 0.5, D)), np.exp(rng.normal(-1.0, 0.3, tokens)),
            rng.normal(-1.5, 0.2, tokens))


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--tokens", type=int, nargs="+", default=[128, 512, 2048],
                    help="context lengths (one tile of 128 tokens is where a sequence starts)")
    ap.add_argument("--trials", type=int, default=8)
    args = ap.parse_args()
    rng = np.random.default_rng(17)
    cases = {t: [make_case(rng, t) for _ in range(args.trials)] for t in args.tokens}
    modes = [("fp32 products, fp32 sums (today)", np.float32, 1),
             ("fp16 products, fp32 sums", np.float16, 1)]
    modes += [(f"fp16 sums of {n}", np.float16, n) for n in (2, 4, 8, 16)]
    modes += [("fp16 throughout", np.float16, 0)]
    print(f"D {D}, {HEADS} query heads per KV head, {args.trials} trials per context; max |err| / "
          "max |out| (worst trial); bar of SPEC §5: 1e-4")
    head = "".join(f"{str(t) + ' tokens':>13}" for t in args.tokens)
    print(f"| {'arithmetic':<32} |{head} | meets the bar | slots per element |")
    print("|" + "-" * 34 + "|" + "-" * (13 * len(args.tokens)) + "-|---------------|-------------------|")
    for name, operand_type, run in modes:
        worst = []
        for t in args.tokens:
            w = 0.0
            for case in cases[t]:
                truth = attend(case, np.float64, 1)
                got = attend(case, operand_type, run)
                w = max(w, float(np.abs(got - truth).max() / np.abs(truth).max()))
            worst.append(w)
        slots = 1.0 if operand_type is np.float32 else 0.5 if run == 0 else (run + 4) / (2 * run)
        cols = "".join(f"{w:>13.2e}" for w in worst)
        ok = "yes" if max(worst) <= 1e-4 else "no"
        print(f"| {name:<32} |{cols} | {ok:<13} | {slots:<17.2f} |")


if __name__ == "__main__":
    main()
