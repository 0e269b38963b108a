"""DecodeStep (KVCache.begin_step): the same outputs and cache bytes as append + attend, step after
step across tile boundaries; a NaN row raised by finish() with the step rolled back; the context
manager; errors. CPU and OpenCL."""

import numpy as np
import pytest

import kvarn_cl

D, HK, HQ, LAYERS = 64, 2, 4, 2


def make_cache(backend, **kw):
    args = dict(preset="k4v2_g64", layers=LAYERS, kv_heads=HK, head_dim=D, max_tokens=512,
                backend=backend, max_sequences=3,
                recent_tokens=0)  # tiles quantize as soon as complete; the default window has its own tests
    args.update(kw)
    return kvarn_cl.KVCache(**args)


def prefilled_pair(backend, lengths, seed=3, **kw):
    rng = np.random.default_rng(seed)
    plain, stepped = make_cache(backend, **kw), make_cache(backend, **kw)
    p_ids = [plain.add_sequence() for _ in lengths]
    s_ids = [stepped.add_sequence() for _ in lengths]
    for layer in range(LAYERS):
        k = rng.standard_normal((sum(lengths), HK, D)).astype(np.float32)
        v = rng.standard_normal((sum(lengths), HK, D)).astype(np.float32)
        plain.append(p_ids, layer, k, v, tokens=lengths)
        stepped.append(s_ids, layer, k, v, tokens=lengths)
    return plain, p_ids, stepped, s_ids


@pytest.mark.parametrize("recent", [0, 24])
def test_step_matches_append_and_attend(backend, recent):
    plain, p_ids, stepped, s_ids = prefilled_pair(backend, [30, 126, 200], recent_tokens=recent)
    rng = np.random.default_rng(9)
    for step in range(40):
        dtype = np.float16 if step % 2 else np.float32
        with stepped.begin_step(s_ids) as st:
            assert st.sequences == s_ids
            for layer in range(LAYERS):
                k = rng.standard_normal((3, HK, D)).astype(dtype)
                v = rng.standard_normal((3, HK, D)).astype(dtype)
                q = rng.standard_normal((3, HQ, D)).astype(np.float32)
                plain.append(p_ids, layer, k[:, None], v[:, None])
                want = plain.attend(layer, q, seqs=p_ids)
                st.append(layer, k, v)
                got = st.attend(layer, q)
                np.testing.assert_array_equal(got, want)
        assert st.sequences == []
    for layer in range(LAYERS):
        for a, b in zip(p_ids, s_ids):
            x, y = plain.snapshot(a, layer), stepped.snapshot(b, layer)
            for key in x:
                np.testing.assert_array_equal(x[key], y[key])
    assert stepped.quantized_tiles(s_ids[2], 0) >= 2


def test_step_failure_rolls_back(backend):
    _, _, cache, ids = prefilled_pair(backend, [63, 127, 10])
    before = [cache.snapshot(s, 1) for s in ids]
    st = cache.begin_step(ids)
    for layer in range(LAYERS):
        k = np.ones((3, HK, D), np.float32)
        v = np.ones((3, HK, D), np.float32)
        if layer == 1:
            k[2, 0, 7] = np.nan
        st.append(layer, k, v)
    with pytest.raises(kvarn_cl.NonFiniteInput, match=f"key row of sequence {ids[2]}"):
        st.finish()
    assert [cache.length(s, 1) for s in ids] == [63, 127, 10]
    for s, b in zip(ids, before):
        a = cache.snapshot(s, 1)
        for key in a:
            np.testing.assert_array_equal(a[key], b[key])
    # an exception inside the with block rolls the step back; the cache stays usable
    with pytest.raises(RuntimeError):
        with cache.begin_step(ids) as st:
            st.append(0, np.ones((3, HK, D), np.float32), np.ones((3, HK, D), np.float32))
            raise RuntimeError("engine failure")
    assert cache.length(ids[0], 0) == 63
    with cache.begin_step(ids) as st:
        for layer in range(LAYERS):
            st.append(layer, np.ones((3, HK, D), np.float32), np.ones((3, HK, D), np.float32))
    assert cache.length(ids[0], 1) == 64


def test_step_errors(cpu):
    cache = make_cache(cpu)
    ids = [cache.add_sequence() for _ in range(2)]
    for layer in range(LAYERS):
        cache.append(ids, layer, np.ones((2, 5, HK, D), np.float32), np.ones((2, 5, HK, D), np.float32))
    st = cache.begin_step(ids)
    with pytest.raises(kvarn_cl.InvalidArgument, match="already open"):
        cache.begin_step(ids)
    with pytest.raises(kvarn_cl.InvalidArgument, match=r"expected \(2, 2, 64\)"):
        st.append(0, np.ones((3, HK, D), np.float32), np.ones((3, HK, D), np.float32))
    with pytest.raises(kvarn_cl.InvalidArgument, match="has not been appended"):
        st.attend(0, np.ones((2, HQ, D), np.float32))
    with pytest.raises(kvarn_cl.InvalidArgument, match="decode step is open"):
        cache.append(ids, 0, np.ones((2, 1, HK, D), np.float32), np.ones((2, 1, HK, D), np.float32))
    st.append(0, np.ones((2, HK, D), np.float32), np.ones((2, HK, D), np.float32))
    with pytest.raises(kvarn_cl.InvalidArgument, match="layer 1 was not appended"):
        st.finish()
    with pytest.raises(kvarn_cl.InvalidArgument, match="this step is finished"):
        st.finish()
    assert cache.length(ids[0], 0) == 5
