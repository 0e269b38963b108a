#!/usr/bin/env python3
"""Turns the output folder of benchmarks/run_device.sh into the Markdown tables of
docs/PERFORMANCE.md (device, driver, date and every figure come from the benchmark JSON).

    python3 benchmarks/perf_report.py device-results > /tmp/tables.md
"""
import json
import os
import re
import sys
from collections import defaultdict


def load(folder, name):
    path = os.path.join(folder, name + ".json")
    if not os.path.exists(path):
        return None
    with open(path) as f:
        text = f.read()
    # A benchmark run whose filter matched nothing leaves an empty file.
    return json.loads(text) if text.strip() else None


def runs(doc):
    return [b for b in doc["benchmarks"] if b.get("run_type") == "iteration" and "error_occurred" not in b]


def context_line(doc):
    c = doc["context"]
    extra = ", ".join(f"{k} {c[k]}" for k in ("device", "driver", "copy_GBps_read_plus_write",
                                                 "fp32_GFLOPs_measured") if k in c)
    return f"run {c['date']} on {c.get('host_name', '?')}: {extra}"


def codec_tables(doc):
    out = ["### Codec kernels (`opencl_codec_bench`)", "", context_line(doc), ""]
    out += ["| quantize | tiles (K+V pairs) | ms per launch | tile pairs / s |", "|---|---|---|---|"]
    for b in runs(doc):
        if b["name"].startswith("BM_Quantize/"):
            m = re.match(r"(\S+) D=(\d+) tiles=(\d+)", b["label"])
            out.append(f"| {m.group(1)} D={m.group(2)} | {int(m.group(3)):,} | {b['ms_per_launch']:.2f} | "
                       f"{b['tile_pairs_per_s'] / 1e6:.3f} M |")
    out += ["", "| dequantize | frame | GB moved (read + write) | µs | GB/s | copy GB/s (same run) | fraction of copy |",
            "|---|---|---|---|---|---|---|"]
    for b in runs(doc):
        if b["name"].startswith("BM_Dequantize/"):
            m = re.match(r"(\S+) D=(\d+) tiles=(\d+).*\) (\w+) frame", b["label"])
            out.append(f"| {m.group(1)} D={m.group(2)}, {int(m.group(3)):,} tiles | {m.group(4)} | "
                       f"{b['GB_moved']:.2f} | {b['real_time']:.0f} | {b['GBps']:.0f} | {b['copy_GBps']:.0f} | "
                       f"{b['fraction_of_copy']:.2f} |")
    return out


def attention_tables(doc):
    out = ["### Decode attention (`opencl_attention_bench`), one layer, one query token per sequence", "",
           context_line(doc), "",
           "Times are the median event-profiled kernel time of one decode step (split + merge; "
           "materialize adds the dequantize launch). Floors: bytes / copy bandwidth and "
           "4·D·Hq flops per token / measured fp32 FMA rate; fraction = max(floor) / time.", ""]
    rows = defaultdict(dict)
    for b in runs(doc):
        m = re.match(r"BM_(\w+)/(\w+)/ctx(\d+)/batch(\d+)", b["name"])
        if not m:
            continue
        kind, geo, ctx, batch = m.group(1), m.group(2), int(m.group(3)), int(m.group(4))
        rows[(geo, ctx, batch)][kind] = b
    for geo in sorted({k[0] for k in rows}):
        out += [f"**{geo}** ({next(iter(rows[k] for k in rows if k[0] == geo))['Fused' if 'Fused' in next(iter(rows[k] for k in rows if k[0] == geo)) else 'Fp16']['label'].split(' ctx')[0]})", "",
                "| context | batch | fp16 µs | fp16 frac. | fused µs | fused bw floor µs | fused fp32 floor µs | fused frac. | materialize µs | fused speed-up vs fp16 |",
                "|---|---|---|---|---|---|---|---|---|---|"]
        for (g, ctx, batch) in sorted(k for k in rows if k[0] == geo):
            r = rows[(g, ctx, batch)]
            f16, fu, ma = r.get("Fp16"), r.get("Fused"), r.get("Materialize")
            cell = lambda b, key, fmt: (fmt % b[key]) if b else "—"
            speed = f"{f16['us_per_step'] / fu['us_per_step']:.2f}×" if f16 and fu else "—"
            out.append(f"| {ctx:,} | {batch} | {cell(f16, 'us_per_step', '%.1f')} | {cell(f16, 'fraction_of_floor', '%.2f')} | "
                       f"{cell(fu, 'us_per_step', '%.1f')} | {cell(fu, 'bw_floor_us', '%.1f')} | {cell(fu, 'fp32_floor_us', '%.1f')} | "
                       f"{cell(fu, 'fraction_of_floor', '%.2f')} | {cell(ma, 'us_per_step', '%.1f')} | {speed} |")
        out.append("")
    return out


def main():
    folder = sys.argv[1] if len(sys.argv) > 1 else "device-results"
    lines = []
    if os.path.exists(os.path.join(folder, "device.txt")):
        lines += ["```", open(os.path.join(folder, "device.txt")).read().strip(), "```", ""]
    codec = load(folder, "opencl_codec_bench")
    if codec:
        lines += codec_tables(codec) + [""]
    attention = load(folder, "opencl_attention_bench")
    if attention:
        lines += attention_tables(attention)
    print("\n".join(lines))


if __name__ == "__main__":
    main()
