"""Every scan form against a plain float64 numpy loop, and their gradients
against finite differences and against the sequential form."""

import keras
import numpy as np
import pytest
from helpers import BACKEND
from helpers import gradients
from helpers import max_relative_error
from helpers import numpy_linear_recurrence
from keras import ops

from keras_mgrade.ops import scan

FORMS = ("sequential", "chunked", "associative", "log")


def _inputs(timesteps, batch=2, features=3, seed=0, h0=True):
    rng = np.random.default_rng(seed)
    a = rng.uniform(0.05, 0.999, (batch, timesteps, features))
    b = rng.uniform(0.0, 1.0, (batch, timesteps, features))
    h = rng.uniform(0.0, 2.0, (batch, features)) if h0 else None
    a, b = a.astype("float32"), b.astype("float32")
    return a, b, None if h is None else h.astype("float32")


@pytest.mark.parametrize("method", FORMS + ("auto",))
@pytest.mark.parametrize("timesteps", [1, 2, 7, 1000])
@pytest.mark.parametrize("with_h0", [False, True])
def test_forms_match_numpy_loop(method, timesteps, with_h0):
    a, b, h0 = _inputs(timesteps, h0=with_h0)
    expected = numpy_linear_recurrence(a, b, h0)
    out = scan.linear_scan(a, b, h0, method=method)
    assert tuple(out.shape) == a.shape
    # float32 rounding only (the log form adds |a*| eps within a chunk).
    tol = 2e-5 if method == "log" else 2e-6
    assert max_relative_error(out, expected) < tol


@pytest.mark.slow
@pytest.mark.parametrize("method", FORMS)
def test_forms_long_sequence(method):
    a, b, h0 = _inputs(16384, batch=2, features=4, seed=3, h0=True)
    expected = numpy_linear_recurrence(a, b, h0)
    out = scan.linear_scan(a, b, h0, method=method)
    # Chunked log space keeps the 16k-step error at the 1e-5 level; an
    # unchunked Heinsen scan is off by ~1e-3 here.
    tol = 2e-5 if method == "log" else 2e-6
    assert max_relative_error(out, expected) < tol


def test_unchunked_heinsen_is_inaccurate_at_16k():
    # Why log_scan chunks: one cumsum over 16384 steps loses ~3 digits.
    a, b, h0 = _inputs(16384, batch=1, features=2, seed=3, h0=False)
    expected = numpy_linear_recurrence(a, b)
    chunked = ops.exp(scan.log_scan(np.log(a), np.log(b)))
    whole = ops.exp(scan.log_scan(np.log(a), np.log(b), chunk_size=16384))
    assert max_relative_error(chunked, expected) < 2e-5
    assert max_relative_error(whole, expected) > 10 * max_relative_error(
        chunked, expected
    )


@pytest.mark.parametrize("chunk_size", [1, 3, 5, 8, 64])
def test_chunked_any_chunk_size(chunk_size):
    a, b, h0 = _inputs(37, seed=5)
    expected = numpy_linear_recurrence(a, b, h0)
    out = scan.chunked_scan(a, b, h0, chunk_size=chunk_size)
    assert max_relative_error(out, expected) < 2e-6


def test_log_scan_chunk_boundaries():
    a, b, h0 = _inputs(130, seed=6)
    expected = numpy_linear_recurrence(a, b, h0)
    for chunk in (1, 7, 64, 129, 130, 200):
        out = ops.exp(
            scan.log_scan(np.log(a), np.log(b), np.log(h0), chunk_size=chunk)
        )
        assert max_relative_error(out, expected) < 2e-5, chunk


def test_zero_inputs_and_zero_decay():
    # b = 0 (masked steps) and a = 0 (a full reset) are exact in every form.
    a, b, h0 = _inputs(20, seed=7)
    a[:, 5] = 0.0
    b[:, 8:12] = 0.0
    a[:, 8:12] = 1.0
    expected = numpy_linear_recurrence(a, b, h0)
    for method in FORMS:
        out = scan.linear_scan(a, b, h0, method=method)
        tol = 2e-5 if method == "log" else 2e-6
        assert max_relative_error(out, expected) < tol, method


def _numpy_finite_difference(a, b, h0, weights, eps=1e-6):
    def loss(a_, b_, h_):
        return np.sum(weights * numpy_linear_recurrence(a_, b_, h_))

    grads = []
    for i, arr in enumerate((a, b, h0)):
        g = np.zeros_like(arr, dtype="float64")
        it = np.nditer(arr, flags=["multi_index"])
        for _ in it:
            idx = it.multi_index
            args = [np.array(x, "float64") for x in (a, b, h0)]
            args[i][idx] += eps
            plus = loss(*args)
            args[i][idx] -= 2 * eps
            minus = loss(*args)
            g[idx] = (plus - minus) / (2 * eps)
        grads.append(g)
    return grads


@pytest.mark.parametrize("method", FORMS)
def test_gradients_match_finite_differences(method):
    a, b, h0 = _inputs(7, batch=2, features=2, seed=8)
    weights = np.random.default_rng(9).normal(size=a.shape).astype("float32")
    expected = _numpy_finite_difference(a, b, h0, weights.astype("float64"))

    def fn(a_, b_, h_):
        out = scan.linear_scan(a_, b_, h_, method=method)
        return out * ops.convert_to_tensor(weights)

    got = gradients(fn, a, b, h0)
    for name, g, e in zip("a b h0".split(), got, expected):
        np.testing.assert_allclose(g, e, rtol=1e-3, atol=1e-4, err_msg=name)


@pytest.mark.parametrize("method", ["chunked", "associative", "log"])
def test_gradients_match_sequential_long(method):
    a, b, h0 = _inputs(1000, batch=2, features=3, seed=10)
    weights = np.random.default_rng(11).normal(size=a.shape).astype("float32")

    def make(m):
        def fn(a_, b_, h_):
            out = scan.linear_scan(a_, b_, h_, method=m)
            return out * ops.convert_to_tensor(weights)

        return fn

    expected = gradients(make("sequential"), a, b, h0)
    got = gradients(make(method), a, b, h0)
    for name, g, e in zip("a b h0".split(), got, expected):
        scale = np.max(np.abs(e))
        assert np.max(np.abs(g - e)) / scale < 1e-4, name


def test_sequential_gradient_matches_autodiff_of_plain_loop():
    # The adjoint used as a custom gradient vs autodiff of the plain loop.
    a, b, h0 = _inputs(50, seed=12)
    weights = np.random.default_rng(13).normal(size=a.shape).astype("float32")

    def plain(a_, b_, h_):
        h, out = h_, []
        for t in range(a_.shape[1]):
            h = a_[:, t] * h + b_[:, t]
            out.append(h)
        return ops.stack(out, 1) * ops.convert_to_tensor(weights)

    def ours(a_, b_, h_):
        out = scan.sequential_scan(a_, b_, h_)
        return out * ops.convert_to_tensor(weights)

    for g, e in zip(gradients(ours, a, b, h0), gradients(plain, a, b, h0)):
        np.testing.assert_allclose(g, e, rtol=1e-5, atol=1e-6)


def _jax_without_x64():
    if BACKEND != "jax":
        return False
    import jax

    return not jax.config.jax_enable_x64


@pytest.mark.skipif(_jax_without_x64(), reason="JAX float64 is disabled")
def test_float64_inputs_stay_float64():
    a, b, h0 = _inputs(9, seed=14)
    out = scan.linear_scan(a.astype("float64"), b.astype("float64"), h0)
    assert keras.backend.standardize_dtype(out.dtype) == "float64"


def test_half_precision_inputs_run_in_float32():
    a, b, _ = _inputs(9, seed=15)
    out = scan.linear_scan(ops.cast(a, "float16"), ops.cast(b, "float16"))
    assert keras.backend.standardize_dtype(out.dtype) == "float32"


def test_resolve_method():
    expected_auto = {
        "jax": "sequential",
        "tensorflow": "chunked",
        "torch": "chunked",
    }[BACKEND]
    assert scan.resolve_method("auto", 1024) == expected_auto
    assert scan.resolve_method("auto", None) == "sequential"
    assert scan.resolve_method("chunked", None) == "sequential"
    assert scan.resolve_method("log", 5) == "log"
    assert scan.default_chunk_size(1024) == 32
    assert scan.default_chunk_size(16384) == 128


def test_bad_arguments():
    a, b, h0 = _inputs(5)
    with pytest.raises(ValueError, match="method='nope'"):
        scan.linear_scan(a, b, method="nope")
    with pytest.raises(ValueError, match="rank 3"):
        scan.linear_scan(a[0], b[0])
    with pytest.raises(ValueError, match="same shape"):
        scan.linear_scan(a, b[:, :3])
    with pytest.raises(ValueError, match="initial_state.shape"):
        scan.linear_scan(a, b, h0[:, :2])
    with pytest.raises(ValueError, match="chunk_size=0"):
        scan.chunked_scan(a, b, chunk_size=0)


@pytest.mark.skipif(BACKEND != "tensorflow", reason="TensorFlow graphs")
def test_tensorflow_xla_and_dynamic_time():
    import tensorflow as tf

    a, b, h0 = _inputs(100, seed=16)
    expected = numpy_linear_recurrence(a, b, h0)
    for method in ("sequential", "chunked", "log", "auto"):
        fn = tf.function(
            lambda x, y, h, m=method: scan.linear_scan(x, y, h, method=m),
            jit_compile=True,
        )
        assert max_relative_error(fn(a, b, h0), expected) < 2e-5, method
    # A time axis unknown when the graph is built: "auto" runs sequentially.
    spec = tf.TensorSpec((None, None, 3), tf.float32)
    fn = tf.function(
        lambda x, y, h: scan.linear_scan(x, y, h),
        input_signature=[spec, spec, tf.TensorSpec((None, 3), tf.float32)],
    )
    assert max_relative_error(fn(a, b, h0), expected) < 2e-6
    with pytest.raises(ValueError, match="associative"):
        tf.function(
            lambda x, y: scan.linear_scan(x, y, method="associative"),
            input_signature=[spec, spec],
        ).get_concrete_function()


@pytest.mark.skipif(BACKEND != "jax", reason="JAX transformations")
def test_jax_jit_and_grad():
    import jax

    a, b, h0 = _inputs(64, seed=17)
    expected = numpy_linear_recurrence(a, b, h0)
    for method in FORMS:
        fn = jax.jit(lambda x, y, h, m=method: scan.linear_scan(x, y, h, m))
        tol = 2e-5 if method == "log" else 2e-6
        assert max_relative_error(fn(a, b, h0), expected) < tol, method
