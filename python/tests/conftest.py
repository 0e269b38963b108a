"""Fixtures of the kvarn_cl tests: the backends (CPU, OpenCL under PoCL or a GPU), the `kvarn-cl`
program for byte-for-byte comparisons, the independent numpy reference of test/reference/.

Environment:
- KVARN_CL_REQUIRE_OPENCL=1: a missing OpenCL device fails the OpenCL tests instead of skipping
  them (CI sets it: PoCL is installed there).
- KVARN_CL_CLI=PATH: the kvarn-cl program to compare with; when set, a missing program fails
  (default: build/tools/kvarn-cl/kvarn-cl of this checkout, skipped when absent).
"""

import atexit
import os
import shutil
import sys
import tempfile

import numpy as np
import pytest

# One PoCL kernel cache per test process (the project's OpenCL hygiene rule), set before any
# OpenCL call of this process.
if "POCL_CACHE_DIR" not in os.environ:
    os.environ["POCL_CACHE_DIR"] = tempfile.mkdtemp(prefix="kvarn-cl-pytest-pocl-")
    atexit.register(shutil.rmtree, os.environ["POCL_CACHE_DIR"], True)

import kvarn_cl  # noqa: E402

REPO = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
sys.path.insert(0, os.path.join(REPO, "test", "reference"))
import kvarn_ref  # noqa: E402  (independent reference of the codec, SPEC §2)


@pytest.fixture(scope="session")
def cpu():
    return kvarn_cl.Backend("cpu")


@pytest.fixture(scope="session")
def opencl():
    try:
        return kvarn_cl.Backend("opencl")
    except kvarn_cl.Error as e:
        if os.environ.get("KVARN_CL_REQUIRE_OPENCL") == "1":
            pytest.fail("KVARN_CL_REQUIRE_OPENCL=1 but no OpenCL backend: %s" % e)
        pytest.skip("no OpenCL device: %s" % e)


@pytest.fixture(params=["cpu", "opencl"])
def backend(request):
    return request.getfixturevalue(request.param)


@pytest.fixture(scope="session")
def cli():
    path = os.environ.get("KVARN_CL_CLI")
    if path:
        if not os.access(path, os.X_OK):
            pytest.fail("KVARN_CL_CLI=%s is not an executable" % path)
        return path
    path = os.path.join(REPO, "build", "tools", "kvarn-cl", "kvarn-cl")
    if not os.access(path, os.X_OK):
        pytest.skip("kvarn-cl not built at %s (set KVARN_CL_CLI)" % path)
    return path


@pytest.fixture
def ref():
    return kvarn_ref


def kv_with_outliers(rng, shape, dtype=np.float16):
    """Keys and values like a model's: N(0,1) with a few loud channels and per-token loudness."""
    d = shape[-1]
    k = rng.standard_normal(shape).astype(np.float32)
    v = rng.standard_normal(shape).astype(np.float32)
    k[..., rng.choice(d, size=3, replace=False)] *= 20.0
    v[..., rng.choice(d, size=2, replace=False)] *= 8.0
    v *= np.exp(0.3 * rng.standard_normal(shape[:-1] + (1,))).astype(np.float32)
    return k.astype(dtype), v.astype(dtype)
