"""examples/decode_loop.py runs and reports sensible numbers (a short run of both data sets)."""

import os
import re
import subprocess
import sys

import pytest

from conftest import REPO


@pytest.mark.parametrize("data", ["random", "real"])
def test_decode_loop_example(data):
    script = os.path.join(REPO, "examples", "decode_loop.py")
    # 600 tokens: past the fp16 sink (128) and the default recent window (128), tiles are quantized.
    r = subprocess.run([sys.executable, script, "--backend", "cpu", "--data", data, "--prompt", "600",
                        "--steps", "20"], capture_output=True, text=True, check=True)
    assert "on cpu" in r.stdout
    saved = [float(x) for x in re.findall(r"\s([0-9.]+)x\s", r.stdout)]
    assert saved and all(s > 1.0 for s in saved)
    err = float(re.search(r"mean relative attention error over 20 steps: ([0-9.e+-]+)", r.stdout).group(1))
    assert 0 < err < 0.6
