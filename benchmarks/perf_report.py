#!/usr/bin/env python3
"""Turns the output folder of benchmarks/run_device.sh into the Markdown tables of
docs/PERFORMANCE.md (device, driver, date and every figure come from the benchmark JSON).

    python3 benchmarks/perf_report.py device-results > /tmp/tables.md

Reads opencl_codec_bench.json, opencl_attention_bench.json, torch_sdpa_bench.json and
torch_model_step_bench.json where present. PyTorch figures are labelled by how they were timed:
kernel-only (GPU time, launch cost excluded: comparable with our OpenCL event times), CUDA graph, or
per call (events around one call on an idle GPU: launch cost included, not comparable with kernel
times). A torch_sdpa_bench.json of before 2026-12-06 has only "us_per_step", a per-call time.
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


def fmt(x, spec):
    return format(x, spec) if x is not None else "—"


def torch_context_line(doc):
    return (f"{doc.get('device', '?')}, driver {doc.get('driver', '?')}, torch {doc.get('torch', '?')} "
            f"(CUDA {doc.get('cuda', '?')}), {doc.get('date', 'date not recorded')}")


def sdpa_per_call_us(row):
    """Per-call time of a torch_sdpa_bench row: old files call it us_per_step."""
    return row.get("per_call_us", row.get("us_per_step"))


def torch_sdpa_tables(doc, attention=None):
    """PyTorch fp16 SDPA, one layer; beside it our fused kernel's event time where the run has it."""
    fused = {}
    if attention:
        geo_heads = {"Llama3_8B": (32, 8), "MHA": (32, 32)}
        for b in runs(attention):
            m = re.match(r"BM_Fused/(\w+)/ctx(\d+)/batch(\d+)", b["name"])
            if m and m.group(1) in geo_heads:
                fused[geo_heads[m.group(1)] + (int(m.group(2)), int(m.group(3)))] = b["us_per_step"]
    out = ["### PyTorch fp16 `scaled_dot_product_attention` (`benchmarks/torch_sdpa_bench.py`), one layer, "
           "one query token per sequence, D 128", "", torch_context_line(doc), "",
           "kernel-only: calls queued behind a GPU-side sleep, events around the batch, time / calls (launch "
           "cost excluded, comparable with OpenCL event times); graph: per call of a replayed CUDA graph; "
           "per call: events around one call on an idle GPU (launch cost included). \"KVarN / kernel-only\" "
           "below 1 means KVarN is faster.", "",
           "| heads | batch | context | PyTorch kernel-only µs | PyTorch CUDA graph µs | PyTorch per call µs "
           "(launch included) | TB/s (kernel-only) | KVarN fused µs (event time) | KVarN / PyTorch kernel-only |",
           "|---|---|---|---|---|---|---|---|---|"]
    for r in doc["rows"]:
        ko = r.get("kernel_only_us")
        ours = fused.get((r["hq"], r["hk"], r["context"], r["batch"]))
        ratio = f"{ours / ko:.2f}" if ours and ko else "—"
        out.append(f"| {r['hq']}/{r['hk']} | {r['batch']} | {r['context']:,} | {fmt(ko, '.1f')} | "
                   f"{fmt(r.get('graph_us'), '.1f')} | {fmt(sdpa_per_call_us(r), '.1f')} | "
                   f"{fmt(r.get('TBps_kernel_only'), '.2f')} | {fmt(ours, '.1f')} | {ratio} |")
    for s in doc.get("skipped", []):
        out.append(f"| {s['hq']}/{s['hk']} | {s['batch']} | {s['context']:,} | skipped: {s['reason']} | | | | | |")
    return out + [""]


def torch_model_step_tables(doc):
    m = doc.get("model", {})
    out = [f"### PyTorch fp16 decode step, {m.get('layers', '?')} layers (`benchmarks/torch_model_step_bench.py`)",
           "", torch_context_line(doc), "",
           f"Per layer: the new token's K and V written to the cache by {m.get('kv_write', '?')}, then SDPA "
           f"of one query token over context + 1 tokens, Hq {m.get('hq')} / Hk {m.get('hk')} / D {m.get('D')}, "
           f"GQA via {m.get('gqa', '?')}. eager wall: host clock of a step + synchronize; kernel-only: GPU "
           "time, steps queued behind a GPU-side sleep; CUDA graph: the whole step as one graph, replayed "
           "(GPU time; \"graph wall\" = one replay + synchronize on the host clock).", "",
           "| batch | context | eager wall ms | kernel-only ms | CUDA graph ms | graph wall ms | graph µs per layer "
           "| cache TB/s (kernel-only) | attention tokens/s (graph) |",
           "|---|---|---|---|---|---|---|---|---|"]
    ms = lambda v: fmt(v / 1e3 if v is not None else None, ".2f")
    for r in doc["rows"]:
        if r.get("status") != "ok":
            out.append(f"| {r['batch']} | {r['context']:,} | skipped: {r.get('reason', '?')} | | | | | | |")
            continue
        out.append(f"| {r['batch']} | {r['context']:,} | {ms(r.get('eager_wall_us'))} | {ms(r.get('kernel_only_us'))} | "
                   f"{ms(r.get('graph_us'))} | {ms(r.get('graph_replay_wall_us'))} | "
                   f"{fmt(r.get('per_layer_graph_us'), '.1f')} | {fmt(r.get('cache_TBps_kernel_only'), '.2f')} | "
                   f"{fmt(r.get('tokens_per_s_graph'), ',.0f')} |")
    cap = doc.get("capacity")
    if cap:
        out += ["", f"Capacity view: a {cap['budget_bytes'] / 1e9:g} GB KV budget holds {cap['batch']} sequences of "
                    f"{cap['context']:,} tokens in the fp16 cache ({cap['fp16_bytes_per_sequence'] / 1e9:.3f} GB each)."]
        if cap.get("note"):
            out[-1] += " " + cap["note"]
        elif cap.get("step_graph_us") or cap.get("step_kernel_only_us"):
            out[-1] += (f" Step at that batch: CUDA graph {ms(cap.get('step_graph_us'))} ms, kernel-only "
                        f"{ms(cap.get('step_kernel_only_us'))} ms, eager wall {ms(cap.get('step_eager_wall_us'))} ms: "
                        f"{fmt(cap.get('tokens_per_s_graph'), ',.0f')} attention tokens/s (graph), "
                        f"{fmt(cap.get('tokens_per_s_kernel_only'), ',.0f')} (kernel-only).")
            if cap.get("derived"):
                out[-1] += " Derived, not measured at that batch: " + cap["derived"] + "."
    return out + [""]


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
    sdpa = load(folder, "torch_sdpa_bench")
    if sdpa:
        lines += torch_sdpa_tables(sdpa, attention)
    step = load(folder, "torch_model_step_bench")
    if step:
        lines += torch_model_step_tables(step)
    print("\n".join(lines))


if __name__ == "__main__":
    main()
