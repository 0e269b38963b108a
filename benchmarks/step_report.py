#!/usr/bin/env python3
"""The decode-step tables of docs/PERFORMANCE.md from one device run's JSON: our 32-layer step
(opencl_model_step_bench --benchmark_out=model_step.json) beside PyTorch fp16 doing the same 32
layers (torch_model_step_bench.py torch_model_step.json), measured in the same call.

    python3 benchmarks/step_report.py model_step.json torch_model_step.json > tables.md

Tables: (1) per shape, our wall per step, kernel sum, host cost per layer, wall / kernels, the
per-call host time of append and attend, the fraction of the bandwidth floor, and PyTorch's CUDA
graph / kernel-only / eager wall, with the ratio graph / ours (above 1: ours is faster); (2) our
fp16 cache mode; (3) the queue without profiling; (4) the capacity view at the KV budget.
"""
import json
import re
import sys


def load_json_cut(path):
    """Google Benchmark's JSON, also when the run was stopped part-way (the file then ends inside
    the benchmark list: keep the complete entries)."""
    text = open(path).read()
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        cut = text.rfind("\n    }")
        return json.loads(text[:cut + 6] + "\n  ]\n}\n")


def load_ours(path):
    rows = {}
    for b in load_json_cut(path)["benchmarks"]:
        m = re.match(r"BM_ModelStep/(.+)/batch(\d+)/ctx(\d+)", b["name"])
        if not m:
            continue
        mode, batch, ctx = m.group(1), int(m.group(2)), int(m.group(3))
        rows[(mode, batch, ctx)] = b
    return rows


def ctx_name(c):
    return f"{c // 1024}K"


def fmt(x, nd=0):
    if x is None:
        return "–"
    if nd == 0:
        return f"{x:,.0f}"
    return f"{x:.{nd}f}"


def main():
    ours = load_ours(sys.argv[1])
    torch = json.load(open(sys.argv[2])) if len(sys.argv) > 2 else None
    trows, tskipped = {}, set()
    if torch:
        for r in torch["rows"]:
            if r.get("status") == "ok":
                trows[(r["batch"], r["context"])] = r
            else:
                tskipped.add((r["batch"], r["context"]))

    print("| batch × context | ours: wall / step (µs) | kernel sum | host µs / layer | wall / kernels "
          "| append call (µs) | attend call (µs) | of bandwidth floor | PyTorch graph | kernel-only | eager wall "
          "| PyTorch graph / ours |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|")
    for (mode, batch, ctx), b in sorted(ours.items(), key=lambda kv: (kv[0][2], kv[0][1])):
        if mode != "kvarn":
            continue
        if b.get("error_occurred"):
            print(f"| {batch} × {ctx_name(ctx)} | skipped: {b.get('error_message', '')[:60]} |||||||||||")
            continue
        t = trows.get((batch, ctx))
        g = t["graph_us"] if t else None
        print(f"| {batch} × {ctx_name(ctx)} | {fmt(b['wall_us'])} | {fmt(b['kernel_us'])} | "
              f"{fmt(b['host_us_per_layer'], 1)} | {fmt(b['wall_per_kernel'], 2)} | {fmt(b['append_host_us'], 1)} | "
              f"{fmt(b['attend_host_us'], 1)} | {fmt(b['of_floor'], 2)} | {fmt(g)} | "
              f"{fmt(t['kernel_only_us']) if t else ('does not fit' if (batch, ctx) in tskipped else '–')} | "
              f"{fmt(t['eager_wall_us']) if t else '–'} | "
              f"{fmt(g / b['wall_us'], 2) if g else '–'} |")

    fp16 = [(k, b) for k, b in ours.items() if k[0] == "fp16" and not b.get("error_occurred")]
    if fp16:
        print()
        print("| our fp16 cache mode, batch × context | wall / step (µs) | kernel sum | host µs / layer | "
              "PyTorch graph | PyTorch graph / ours |")
        print("|---|---|---|---|---|---|")
        for (mode, batch, ctx), b in sorted(fp16, key=lambda kv: (kv[0][2], kv[0][1])):
            t = trows.get((batch, ctx))
            g = t["graph_us"] if t else None
            print(f"| {batch} × {ctx_name(ctx)} | {fmt(b['wall_us'])} | {fmt(b['kernel_us'])} | "
                  f"{fmt(b['host_us_per_layer'], 1)} | {fmt(g)} | {fmt(g / b['wall_us'], 2) if g else '–'} |")

    noprof = [(k, b) for k, b in ours.items() if k[0] == "no_profiling/kvarn" and not b.get("error_occurred")]
    if noprof:
        print()
        print("| queue without profiling, batch × context | wall / step (µs) | append call (µs) | attend call (µs) "
              "| same shape, profiling queue: wall |")
        print("|---|---|---|---|---|")
        for (mode, batch, ctx), b in sorted(noprof, key=lambda kv: (kv[0][2], kv[0][1])):
            p = ours.get(("kvarn", batch, ctx))
            print(f"| {batch} × {ctx_name(ctx)} | {fmt(b['wall_us'])} | {fmt(b['append_host_us'], 1)} | "
                  f"{fmt(b['attend_host_us'], 1)} | {fmt(p['wall_us']) if p else '–'} |")

    nowin = [(k, b) for k, b in ours.items() if k[0] == "kvarn_no_window" and not b.get("error_occurred")]
    if nowin:
        print()
        # The kernel sum is the steadier figure: a step's wall time moves by up to ±20 % between
        # runs with the host's scheduling, its kernels by a few per cent.
        print("| default recent window (128) vs off, batch × context | wall / step, window off (µs) "
              "| wall / step, default (µs) | default / off (wall) | kernel sum off (µs) "
              "| kernel sum default (µs) | default / off (kernels) | cache GB off | cache GB default |")
        print("|---|---|---|---|---|---|---|---|---|")
        for (mode, batch, ctx), b in sorted(nowin, key=lambda kv: (kv[0][2], kv[0][1])):
            d = ours.get(("kvarn", batch, ctx))
            ok = d and not d.get("error_occurred")
            print(f"| {batch} × {ctx_name(ctx)} | {fmt(b['wall_us'])} | {fmt(d['wall_us']) if ok else '–'} | "
                  f"{fmt(d['wall_us'] / b['wall_us'], 3) if ok else '–'} | {fmt(b['kernel_us'])} | "
                  f"{fmt(d['kernel_us']) if ok else '–'} | "
                  f"{fmt(d['kernel_us'] / b['kernel_us'], 3) if ok else '–'} | {fmt(b['cache_gb'], 2)} | "
                  f"{fmt(d['cache_gb'], 2) if ok else '–'} |")

    cap = [(k, b) for k, b in ours.items() if k[0].startswith("capacity") and not b.get("error_occurred")]
    if cap or (torch and torch.get("capacity")):
        print()
        print("| capacity view, 32K context | batch held | cache GB | step (µs) | attention tokens/s |")
        print("|---|---|---|---|---|")
        for (mode, batch, ctx), b in cap:
            print(f"| KVarN k4v2_g128 ({mode.split('/')[0]}) | {batch} | {fmt(b['cache_gb'], 1)} | {fmt(b['wall_us'])} "
                  f"(wall) | {fmt(b['tokens_per_s'])} |")
        if torch and torch.get("capacity"):
            c = torch["capacity"]
            print(f"| PyTorch fp16 ({c['budget_bytes'] / 1e9:.0f} GB) | {c['batch']} | "
                  f"{c['fp16_bytes_per_sequence'] * c['batch'] / 1e9:.1f} | {fmt(c['step_graph_us'])} (graph) | "
                  f"{fmt(c['tokens_per_s_graph'])} |")


if __name__ == "__main__":
    main()
