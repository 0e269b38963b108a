#!/usr/bin/env python3
"""Turns the JSON of benchmarks/cpu_backends_bench into the side-by-side CPU tables of
docs/PERFORMANCE.md (medians of the repetitions; wall time and the process's CPU time).

    ./build/benchmarks/cpu_backends_bench --benchmark_repetitions=3 \\
        --benchmark_out=cpu.json --benchmark_out_format=json
    python3 benchmarks/cpu_report.py cpu.json > /tmp/cpu_tables.md
"""
import json
import re
import sys


def medians(doc):
    out = {}
    for b in doc["benchmarks"]:
        if b.get("aggregate_name") != "median" or "error_occurred" in b:
            continue
        name = b["run_name"]
        fields = dict(re.findall(r"(\w+):(\d+)", name))
        out[(name.split("/")[0], tuple(sorted(fields.items())))] = b
    return out


def key(kind, **fields):
    return (kind, tuple(sorted((k, str(v)) for k, v in fields.items())))


def ms(b):
    scale = {"ms": 1.0, "us": 1e-3, "ns": 1e-6, "s": 1e3}[b["time_unit"]]
    return b["real_time"] * scale, b["cpu_time"] * scale


def main(path):
    with open(path) as f:
        doc = json.load(f)
    m = medians(doc)
    c = doc["context"]
    any_b = next(iter(m.values()))
    print(f"date {c['date']}, {c['num_cpus']} CPUs at {c['mhz_per_cpu']} MHz, load average "
          f"{', '.join(f'{x:.1f}' for x in c.get('load_avg', []))}; memcpy {any_b['copy_GB/s']:.1f} GB/s "
          f"(read+write), fp32 FMA {any_b.get('fma_GFLOP/s', float('nan')):.1f} GFLOP/s (all cores), "
          f"both measured in the same run\n")
    print("| fused k4v2_g128 decode, D 128, one layer | C++ backend wall (CPU) | PoCL wall (CPU) "
          "| C++ speed-up, wall (CPU) | C++ GB/s, of memcpy | C++ GFLOP/s, of FMA |")
    print("|---|---|---|---|---|---|")
    for hq, ctx, batch in [(32, 1024, 1), (32, 8192, 1), (32, 32768, 1), (32, 1024, 8), (32, 8192, 8),
                           (8, 1024, 1), (8, 8192, 1), (8, 32768, 1)]:
        a = m.get(key("BM_FusedDecode", backend=0, hq=hq, ctx=ctx, batch=batch))
        b = m.get(key("BM_FusedDecode", backend=1, hq=hq, ctx=ctx, batch=batch))
        if not a:
            continue
        aw, ac = ms(a)
        row = f"| Hq {hq} / Hk 8, {ctx // 1024}K, batch {batch} | {aw:.2f} ms ({ac:.2f}) |"
        if b:
            bw, bc = ms(b)
            row += f" {bw:.2f} ms ({bc:.2f}) | {bw / aw:.1f}x ({bc / ac:.1f}x) |"
        else:
            row += " n/a | n/a |"
        row += (f" {a['GB/s']:.2f}, {100 * a['of_copy']:.1f} % | {a['GFLOP/s']:.1f}, "
                f"{100 * a['of_fma']:.0f} % |")
        print(row)
    print()
    print("| codec, k4v2_g128 D 128, 64 tiles | C++ backend wall (CPU) | PoCL wall (CPU) | C++ tiles/s "
          "(per core) | PoCL tiles/s | C++ of memcpy |")
    print("|---|---|---|---|---|---|")
    for kind, label in [("BM_Quantize", "quantize (tile pairs)"), ("BM_Dequantize", "dequantize (rotated frame)")]:
        a = m.get(key(kind, backend=0))
        b = m.get(key(kind, backend=1))
        if not a:
            continue
        aw, ac = ms(a)
        row = f"| {label} | {aw:.2f} ms ({ac:.2f}) |"
        row += f" {ms(b)[0]:.2f} ms ({ms(b)[1]:.2f}) |" if b else " n/a |"
        row += f" {a['tiles/s']:,.0f} ({a['tiles/s/core']:,.0f}) |"
        row += f" {b['tiles/s']:,.0f} |" if b else " n/a |"
        row += f" {100 * a['of_copy']:.1f} % |" if "of_copy" in a else " |"
        print(row)


if __name__ == "__main__":
    main(sys.argv[1])
