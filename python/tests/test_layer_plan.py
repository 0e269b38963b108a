"""Per-layer preset plans: choose_layer_presets under a budget, its errors, the proxy sensitivity
of captured rows, a plan that a KVCache takes, and the default recent-token window."""

import math

import numpy as np
import pytest

import kvarn_cl

LADDER = ["k4v2_g128", "k4v4_g128"]
# Four layers, layer 2 by far the most sensitive at k4v2: [layer][candidate].
ERROR = [[0.010, 0.004], [0.012, 0.005], [0.090, 0.006], [0.011, 0.004]]


def test_one_upgrade_goes_to_the_most_sensitive_layer():
    b2 = kvarn_cl.preset_bytes_per_token_head("k4v2_g128", 64)
    b4 = kvarn_cl.preset_bytes_per_token_head("k4v4_g128", 64)
    assert (b2, b4) == (57.0, 73.0)
    plan = kvarn_cl.choose_layer_presets(ERROR, LADDER, 64, (3 * b2 + b4) / 4)
    assert plan.presets == ["k4v2_g128", "k4v2_g128", "k4v4_g128", "k4v2_g128"]
    assert plan.bytes_per_token_head == 61.0
    assert plan.predicted_error == pytest.approx(0.010 + 0.012 + 0.006 + 0.011)
    # A numpy matrix is taken as well; just below the budget nothing upgrades.
    below = kvarn_cl.choose_layer_presets(np.array(ERROR), LADDER, 64, 60.99)
    assert below.presets == ["k4v2_g128"] * 4
    budget = kvarn_cl.budget_from_total_bytes(61 * 1000 * 3 * 4, 1000, 3, 4)
    assert budget == 61.0
    assert kvarn_cl.choose_layer_presets(ERROR, LADDER, 64, budget).presets == plan.presets


def test_budget_below_the_cheapest_plan_names_both():
    with pytest.raises(kvarn_cl.InvalidArgument, match=r"budget 50 B/token/head is below the cheapest plan.*k4v2_g128 takes 57"):
        kvarn_cl.choose_layer_presets(ERROR, LADDER, 64, 50)
    with pytest.raises(kvarn_cl.InvalidArgument, match="budget"):
        kvarn_cl.choose_layer_presets(ERROR, LADDER, 64, math.nan)


def test_never_exceeds_the_budget():
    rng = np.random.default_rng(5)
    ladder = ["k4v4_g128", "k2v2_g128", "k4v2_g128"]
    for _ in range(50):
        layers = int(rng.integers(1, 31))
        e2 = rng.random(layers)
        e42 = e2 * rng.random(layers)
        e44 = e42 * rng.random(layers)
        error = np.stack([e44, e2, e42], axis=1)
        budget = 41 + 40 * rng.random()
        plan = kvarn_cl.choose_layer_presets(error, ladder, 64, budget)
        assert len(plan.presets) == layers
        spent = np.mean([kvarn_cl.preset_bytes_per_token_head(p, 64) for p in plan.presets])
        assert plan.bytes_per_token_head == pytest.approx(spent)
        assert plan.bytes_per_token_head <= budget


def test_bad_arguments_are_named():
    with pytest.raises(kvarn_cl.InvalidArgument, match=r"sensitivity.error\[1\] has 1 values for 2"):
        kvarn_cl.choose_layer_presets([[0.1, 0.01], [0.1]], LADDER, 64, 64)
    with pytest.raises(kvarn_cl.InvalidArgument, match=r"sensitivity.error\[0\]\[1\]"):
        kvarn_cl.choose_layer_presets([[0.1, -1.0]], LADDER, 64, 64)
    with pytest.raises(kvarn_cl.InvalidArgument, match="presets must be a list"):
        kvarn_cl.choose_layer_presets(ERROR, "k4v2_g128", 64, 64)
    with pytest.raises(kvarn_cl.InvalidArgument, match="k4v9"):
        kvarn_cl.choose_layer_presets(ERROR, ["k4v2_g128", "k4v9"], 64, 64)
    with pytest.raises(kvarn_cl.InvalidArgument, match="tile size"):
        kvarn_cl.choose_layer_presets(ERROR, ["k4v2_g128", "k4v4_g64"], 64, 64)
    with pytest.raises(kvarn_cl.InvalidArgument, match="rows of numbers"):
        kvarn_cl.choose_layer_presets("abc", LADDER, 64, 64)


def test_measured_sensitivity_ranks_presets_and_plans_a_cache():
    rng = np.random.default_rng(1)
    L, T, Hk, D = 3, 256, 2, 64
    k = rng.standard_normal((L, T, Hk, D), dtype=np.float32)
    v = rng.standard_normal((L, T, Hk, D), dtype=np.float32)
    v[1, :, :, 3] *= 30  # one value channel of layer 1 far larger: 2-bit values suffer most there
    err = kvarn_cl.measure_layer_sensitivity(k, v, LADDER)
    assert err.shape == (L, 2) and err.dtype == np.float64
    assert np.all(err[:, 1] > 0) and np.all(err[:, 1] < err[:, 0])
    plan = kvarn_cl.choose_layer_presets(err, LADDER, D, (2 * 57 + 73) / 3)
    assert plan.presets.count("k4v4_g128") == 1
    cache = kvarn_cl.KVCache(layers=L, kv_heads=Hk, head_dim=D, max_tokens=512, backend="cpu",
                             layer_presets=plan.presets)
    assert cache.layer_presets == plan.presets
    text = plan.to_file_text("test plan")
    assert text.startswith("# kvarn_cl layer presets") and "# test plan" in text


def test_measured_sensitivity_checks_its_arrays():
    k = np.zeros((2, 100, 1, 64), np.float32)
    with pytest.raises(kvarn_cl.InvalidArgument, match="tokens 100"):
        kvarn_cl.measure_layer_sensitivity(k, k, LADDER)
    with pytest.raises(kvarn_cl.InvalidArgument, match="v has shape"):
        kvarn_cl.measure_layer_sensitivity(np.zeros((2, 128, 1, 64), np.float32), k, LADDER)
    with pytest.raises(kvarn_cl.InvalidArgument, match="expected \\(layers, tokens, kv_heads, head_dim\\)"):
        kvarn_cl.measure_layer_sensitivity(k[0], k[0], LADDER)
    bad = np.ones((1, 128, 1, 64), np.float32)
    bad[0, 7, 0, 1] = np.inf
    with pytest.raises(kvarn_cl.NonFiniteInput, match="k of layer 0, token 7, head 0"):
        kvarn_cl.measure_layer_sensitivity(bad, np.ones_like(bad), LADDER)


def test_the_default_cache_keeps_128_recent_tokens_exact():
    """The default configuration is the one that meets the accuracy bar (docs/ACCURACY.md)."""
    on = kvarn_cl.KVCache(head_dim=64, max_tokens=1024, backend="cpu")
    off = kvarn_cl.KVCache(head_dim=64, max_tokens=1024, backend="cpu", recent_tokens=0)
    assert on.recent_tokens == 128 and off.recent_tokens == 0
    assert on.memory_report()["tail"] - off.memory_report()["tail"] == 128 * 2 * 64 * 2
