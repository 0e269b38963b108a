#!/usr/bin/env python3
"""Checks that every #include between the folders of src/ runs down the floors below.

A file in src/<folder>/ may include its own folder and the folders of LOWER floors only; an
include of a folder on the same floor or a higher one fails the check (folders on one floor are
siblings: neither may lean on the other, so no cycle can form). Public headers ("kvarn_cl/...")
are the API that every floor implements and are not part of the graph. A folder of src/ that is
not in FLOORS fails too, so that a new folder gets a place here.

Usage: check_layering.py [SRC_DIR]   (default: src/ next to this script's folder)
Exit status 0 when every arrow runs down, 1 with one line per violation otherwise.
"""

import os
import re
import sys

# The floors of src/, lowest first (docs/ARCHITECTURE.md, "Floors"). Written once, here.
FLOORS = [
    # 0: leaves: bounded file reading, integer parsing; they include nothing of src/
    ["io", "util"],
    # 1: the record format, presets, fp16, errors (the numeric contract of SPEC.md)
    ["format"],
    # 2: the seam below both backends: the argument validator, the host codec over any Backend,
    #    the host memory limit
    ["backend_api"],
    # 3: the backends, side by side: neither includes the other
    ["cpu", "opencl"],
    # 4: above both backends: the factory (make_backend), the cache, which only knows Backend, and
    #    the per-layer preset chooser, which measures presets with the CPU codec's public API
    ["factory", "cache", "plan"],
    # 5: the C API over everything
    ["capi"],
]

INCLUDE = re.compile(r'^\s*#\s*include\s*"([^"]+)"')


def floor_of():
    return {folder: n for n, folders in enumerate(FLOORS) for folder in folders}


def violations(src_dir):
    floors = floor_of()
    found = []
    for folder in sorted(os.listdir(src_dir)):
        path = os.path.join(src_dir, folder)
        if not os.path.isdir(path):
            continue
        if folder not in floors:
            found.append(f"src/{folder}/: a folder with no floor (add it to FLOORS in {__file__})")
            continue
        for root, _, files in os.walk(path):
            for name in sorted(files):
                if not name.endswith((".cpp", ".hpp", ".h", ".inl")):
                    continue
                file_path = os.path.join(root, name)
                rel = os.path.relpath(file_path, os.path.dirname(src_dir))
                with open(file_path, encoding="utf-8") as f:
                    for line_no, line in enumerate(f, 1):
                        m = INCLUDE.match(line)
                        if not m or "/" not in m.group(1):
                            continue  # same-folder includes ("guarded.inl") and system headers
                        target = m.group(1).split("/")[0]
                        if target == "kvarn_cl" or target == folder:
                            continue
                        if target not in floors:
                            if os.path.isdir(os.path.join(src_dir, target)):
                                found.append(f"{rel}:{line_no}: includes src/{target}/, "
                                             "a folder with no floor")
                            continue  # a generated or third-party header (build/generated/...)
                        if floors[target] >= floors[folder]:
                            found.append(
                                f"{rel}:{line_no}: {folder} (floor {floors[folder]}) includes "
                                f"\"{m.group(1)}\" of {target} (floor {floors[target]}): "
                                "includes must run down")
    return found


def main():
    here = os.path.dirname(os.path.abspath(__file__))
    src_dir = sys.argv[1] if len(sys.argv) > 1 else os.path.join(here, os.pardir, "src")
    src_dir = os.path.abspath(src_dir)
    found = violations(src_dir)
    for v in found:
        print(v)
    if found:
        print(f"check_layering: {len(found)} include(s) against the floors")
        return 1
    print("check_layering: every include of src/ runs down "
          + " < ".join("{" + ", ".join(f) + "}" for f in FLOORS))
    return 0


if __name__ == "__main__":
    sys.exit(main())
