#!/usr/bin/env python3
"""The decode-step picture of docs/PERFORMANCE.md: microseconds per step against context, at batch
1 and 8 (Llama-3-8B heads: Hq 32, Hk 8, D 128), for fused KVarN k4v2_g128 (the kernel the
library picked: the matrix-unit kernel on the H200), the best portable OpenCL kernel on the same
cache, our fp16 attention and PyTorch's fp16 scaled_dot_product_attention, all from one run.

  python3 benchmarks/plot_decode.py ATTN.json TORCH.json OUT.png

ATTN.json is opencl_attention_bench's --benchmark_out, TORCH.json benchmarks/torch_sdpa_bench.py's.
PyTorch is drawn kernel-only (launch cost excluded, like our event times) where TORCH.json has it;
an older TORCH.json has only per-call times (launch cost included), and the legend says so.
Needs matplotlib.
"""
import json
import re
import sys


def main() -> int:
    if len(sys.argv) != 4:
        print(__doc__)
        return 2
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    attn = json.load(open(sys.argv[1]))
    torch = json.load(open(sys.argv[2]))
    ours = {}  # (kind, batch) -> {context: us}
    for b in attn["benchmarks"]:
        m = re.match(r"BM_(Fused|Fp16)/Llama3_8B/ctx(\d+)/batch(\d+)/", b["name"])
        if not m or b.get("error_occurred"):
            continue
        kind, ctx, batch = m.group(1), int(m.group(2)), int(m.group(3))
        ours.setdefault((kind, batch), {})[ctx] = b["us_per_step"]
        if kind == "Fused":
            portable = min(b.get("short_kernel_us", 1e30), b.get("slots_kernel_us", 1e30))
            ours.setdefault(("Portable", batch), {})[ctx] = portable
    pt = {}
    kernel_only = any(r.get("kernel_only_us") for r in torch["rows"])
    for r in torch["rows"]:
        if r["hq"] == 32 and r["hk"] == 8:
            us = r.get("kernel_only_us") if kernel_only else r.get("per_call_us", r.get("us_per_step"))
            if us:
                pt.setdefault(r["batch"], {})[r["context"]] = us
    pt_label = ("PyTorch fp16 SDPA, kernel-only" if kernel_only
                else "PyTorch fp16 SDPA, per call (launch cost included)")

    fig, axes = plt.subplots(1, 2, figsize=(11, 4.2))
    device = attn.get("context", {}).get("device", "?")
    for ax, batch in zip(axes, (1, 8)):
        series = [("KVarN k4v2 fused (auto: matrix units)", ours.get(("Fused", batch), {}), "o-"),
                  ("KVarN k4v2, best portable kernel", ours.get(("Portable", batch), {}), "s--"),
                  ("our fp16 attention", ours.get(("Fp16", batch), {}), "^:"),
                  (pt_label, pt.get(batch, {}), "d-")]
        for label, pts, style in series:
            if not pts:
                continue
            xs = sorted(pts)
            ax.plot(xs, [pts[x] for x in xs], style, label=label)
        ax.set_xscale("log", base=2)
        ax.set_yscale("log")
        ax.set_xlabel("context (tokens per sequence)")
        ax.set_ylabel("µs per decode step (one layer)")
        ax.set_title(f"batch {batch}, Hq 32 / Hk 8, D 128")
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=8)
    fig.suptitle(f"Decode attention on {device}: kernel time per step (lower is better)"
                 + ("" if kernel_only else "; PyTorch per call, launch included"))
    fig.tight_layout()
    fig.savefig(sys.argv[3], dpi=110)
    return 0


if __name__ == "__main__":
    sys.exit(main())
