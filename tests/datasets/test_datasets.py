"""The dataset generators against their defining properties (numpy only,
nothing downloaded: the real-data loaders read tiny files made here)."""

import os
import subprocess
import sys
import wave

import keras
import numpy as np
import pytest

from keras_mgrade import datasets

# ---------------------------------------------------------------- general


def test_every_public_function_has_an_example():
    for name in datasets.__all__:
        obj = getattr(datasets, name)
        if callable(obj):
            assert "Example:" in obj.__doc__, name


def test_import_is_numpy_only():
    # A bare parent package, so that only the datasets subpackage runs.
    root = os.path.dirname(os.path.dirname(datasets.__file__))
    code = (
        "import sys, types\n"
        "pkg = types.ModuleType('keras_mgrade')\n"
        f"pkg.__path__ = [{root!r}]\n"
        "sys.modules['keras_mgrade'] = pkg\n"
        "import keras_mgrade.datasets\n"
        "heavy = ('keras', 'sklearn', 'tensorflow', 'tensorflow_datasets',\n"
        "         'jax', 'torch')\n"
        "print([m for m in heavy if m in sys.modules])\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        check=True,
    )
    assert out.stdout.strip() == "[]"


GENERATORS = {
    "lorenz": lambda seed: datasets.lorenz(2, 20, burn_in=10, seed=seed),
    "flip_flop": lambda seed: datasets.flip_flop(3, 40, seed=seed),
    "selective_copy": lambda seed: datasets.selective_copy(3, 20, 4, seed=seed),
    "multi_timescale": lambda seed: datasets.multi_timescale(8, 64, seed=seed),
    "listops": lambda seed: datasets.listops(4, 40, 3, seed=seed),
}


@pytest.mark.parametrize("name", sorted(GENERATORS))
def test_deterministic_by_seed(name):
    make = GENERATORS[name]
    first, again, other = make(3), make(3), make(4)
    for a, b in zip(first, again):
        np.testing.assert_array_equal(a, b)
    assert any(not np.array_equal(a, b) for a, b in zip(first, other))


BAD_ARGUMENTS = [
    (datasets.lorenz, dict(num_sequences=0, timesteps=5), "num_sequences"),
    (datasets.lorenz, dict(num_sequences=1, timesteps=2.0), "timesteps"),
    (datasets.lorenz, dict(num_sequences=1, timesteps=5, dt=-1), "dt"),
    (datasets.lorenz, dict(num_sequences=1, timesteps=5, dt=1.0), "dt"),
    (
        datasets.lorenz,
        dict(num_sequences=1, timesteps=5, observed=3),
        "observed",
    ),
    (
        datasets.lorenz,
        dict(num_sequences=1, timesteps=5, observed=(0, 1, 2)),
        "observed",
    ),
    (datasets.lorenz, dict(num_sequences=1, timesteps=5, task="x"), "task"),
    (datasets.lorenz, dict(num_sequences=1, timesteps=5, horizon=0), "horizon"),
    (datasets.lorenz, dict(num_sequences=1, timesteps=5, seed=-1), "seed"),
    (datasets.lorenz, dict(num_sequences=1, timesteps=5, seed=1.5), "seed"),
    (datasets.lorenz_derivative, dict(state=[1.0, 2.0]), "state"),
    (datasets.flip_flop, dict(num_sequences=1, timesteps=0), "timesteps"),
    (
        datasets.flip_flop,
        dict(num_sequences=1, timesteps=5, p_write=0.0),
        "p_write",
    ),
    (
        datasets.flip_flop,
        dict(num_sequences=1, timesteps=5, p_write=0.6, p_read=0.6),
        "p_read",
    ),
    (
        datasets.flip_flop,
        dict(num_sequences=1, timesteps=5, num_bits=0),
        "num_bits",
    ),
    (
        datasets.selective_copy,
        dict(num_sequences=1, timesteps=7, num_tokens=4),
        "timesteps",
    ),
    (
        datasets.selective_copy,
        dict(num_sequences=1, timesteps=8, vocabulary_size=0),
        "vocabulary_size",
    ),
    (
        datasets.multi_timescale,
        dict(num_sequences=4, num_classes=3),
        "num_classes",
    ),
    (
        datasets.multi_timescale,
        dict(num_sequences=4, timesteps=20),
        "timesteps",
    ),
    (datasets.multi_timescale, dict(num_sequences=4, noise=-0.1), "noise"),
    (
        datasets.multi_timescale,
        dict(num_sequences=4, burst_length=2),
        "burst_length",
    ),
    (datasets.listops, dict(num_sequences=1, max_length=3), "max_length"),
    (datasets.listops, dict(num_sequences=1, max_depth=0), "max_depth"),
    (datasets.listops, dict(num_sequences=1, max_args=1), "max_args"),
    (
        datasets.listops,
        dict(num_sequences=1, max_length=10, min_length=11),
        "min_length",
    ),
    (
        datasets.listops,
        dict(num_sequences=1, max_length=50, max_depth=1, min_length=30),
        "min_length",
    ),
    (
        datasets.listops_evaluate,
        dict(tree_or_string="[MAX 1 2"),
        "tree_or_string",
    ),
    (
        datasets.listops_evaluate,
        dict(tree_or_string=("ADD", [1])),
        "tree_or_string",
    ),
    (datasets.listops_to_string, dict(tree_or_ids=[99]), "tree_or_ids"),
    (datasets.digits, dict(upsample=0), "upsample"),
    (datasets.digits, dict(test_fraction=1.0), "test_fraction"),
    (datasets.digits, dict(permuted="yes"), "permuted"),
    (datasets.sequence_permutation, dict(length=0), "length"),
    (datasets.smnist, dict(permuted=1), "permuted"),
    (datasets.scifar, dict(grayscale=None), "grayscale"),
    (datasets.speech_commands, dict(directory="/nonexistent"), "directory"),
]


@pytest.mark.parametrize(
    "function,kwargs,name",
    BAD_ARGUMENTS,
    ids=[f"{f.__name__}-{n}" for f, _, n in BAD_ARGUMENTS],
)
def test_bad_arguments_raise(function, kwargs, name):
    with pytest.raises(
        ValueError, match=rf"Invalid `{name}`\. Expected .* Received: {name}"
    ):
        function(**kwargs)


# ----------------------------------------------------------------- lorenz


def _unstandardise(state):
    return state.astype("float64") * datasets.LORENZ_STD + datasets.LORENZ_MEAN


def test_lorenz_follows_the_ode():
    dt = 0.01
    x, y = datasets.lorenz(3, 300, dt=dt, observed=0)
    assert x.dtype == y.dtype == np.float32
    assert x.shape == (3, 300, 1) and y.shape == (3, 300, 2)
    s = _unstandardise(np.concatenate([x, y], axis=-1))
    # 4th-order central differences of the recorded states.
    derivative = (-s[:, 4:] + 8 * s[:, 3:-1] - 8 * s[:, 1:-3] + s[:, :-4]) / (
        12 * dt
    )
    expected = datasets.lorenz_derivative(s[:, 2:-2])
    error = np.abs(derivative - expected).max() / np.abs(expected).max()
    assert error < 2e-3
    # A wrong system (rho = 20) is far off: the check has teeth.
    wrong = expected.copy()
    wrong[..., 1] -= 8.0 * s[:, 2:-2, 0]
    assert np.abs(derivative - wrong).max() / np.abs(expected).max() > 0.1
    # On the attractor and roughly standardised.
    assert abs(float(np.mean(s[..., 2])) - 23.5) < 5
    assert 0.3 < float(np.std(np.concatenate([x, y], -1))) < 2


def test_lorenz_observed_and_reconstruct_targets():
    x0, y0 = datasets.lorenz(2, 50, observed=0)
    x2, y2 = datasets.lorenz(2, 50, observed=(2, 0))
    full = np.concatenate([x0, y0], axis=-1)
    np.testing.assert_array_equal(x2, full[..., [2, 0]])
    np.testing.assert_array_equal(y2, full[..., [1]])


@pytest.mark.parametrize("horizon", [1, 7])
def test_lorenz_forecast_is_the_shifted_state(horizon):
    x, y = datasets.lorenz(
        2, 60, observed=(0, 1, 2), task="forecast", horizon=horizon
    )
    assert x.shape == (2, 60, 3) and y.shape == (2, 60, 3)
    np.testing.assert_array_equal(y[:, :-horizon], x[:, horizon:])
    # The same trajectories as the reconstruction task.
    xr, yr = datasets.lorenz(2, 60, observed=0)
    np.testing.assert_array_equal(x[..., :1], xr)


def test_lorenz_noise_only_on_inputs():
    x, y = datasets.lorenz(2, 50)
    xn, yn = datasets.lorenz(2, 50, noise=0.5)
    np.testing.assert_array_equal(y, yn)
    assert 0.3 < float(np.std(xn - x)) < 0.7


# -------------------------------------------------------------- flip-flop


def test_flip_flop_reads_return_the_last_written_bits():
    x, y, mask = datasets.flip_flop(20, 200, num_bits=2, seed=1)
    assert x.shape == (20, 200, 5) and y.shape == (20, 200, 2)
    assert mask.shape == (20, 200)
    assert x.dtype == y.dtype == mask.dtype == np.float32
    np.testing.assert_array_equal(x[..., :3].sum(-1), 1.0)
    num_reads = 0
    for i in range(20):
        last = None
        for t in range(200):
            instruction = int(np.argmax(x[i, t, :3]))
            bits = x[i, t, 3:]
            if t == 0:
                assert instruction == 0
            if instruction == 0:
                last = bits.copy()
            assert mask[i, t] == (instruction == 2)
            if instruction == 2:
                num_reads += 1
                np.testing.assert_array_equal(bits, 0)
                np.testing.assert_array_equal(y[i, t], last)
    assert num_reads > 100


def test_flip_flop_instruction_frequencies():
    x, _, _ = datasets.flip_flop(200, 200, p_write=0.2, p_read=0.3)
    freq = x[:, 1:, :3].mean(axis=(0, 1))
    np.testing.assert_allclose(freq, [0.2, 0.5, 0.3], atol=0.01)


# --------------------------------------------------------- selective copy


def test_selective_copy_targets_are_the_tokens_in_order():
    k, vocab, steps = 6, 5, 30
    x, y = datasets.selective_copy(50, steps, k, vocab, seed=2)
    assert x.shape == (50, steps) and y.shape == (50, k)
    assert x.dtype == y.dtype == np.int32
    np.testing.assert_array_equal(x[:, -k:], vocab + 1)
    assert y.min() >= 1 and y.max() <= vocab
    positions = []
    for i in range(50):
        head = x[i, : steps - k]
        np.testing.assert_array_equal(head[head != 0], y[i])
        positions.append(tuple(np.flatnonzero(head)))
    assert len(set(positions)) > 40  # the positions vary


# -------------------------------------------------------- multi-timescale


def _multi_timescale_rule(x, burst_length, num_classes):
    quarter = x.shape[1] // 4
    early = x[:, :quarter, 0]
    peak = early[np.arange(len(x)), np.argmax(np.abs(early), axis=1)]
    slow = (peak > 0).astype(int)
    burst = np.sign(x[:, -burst_length:, 1])
    changes = np.sum(burst[:, 1:] != burst[:, :-1], axis=1)
    fast = (changes >= burst_length / 2).astype(int)
    return 2 * slow + fast if num_classes == 4 else slow ^ fast


@pytest.mark.parametrize("num_classes", [2, 4])
def test_multi_timescale_labels_follow_the_rule(num_classes):
    x, y = datasets.multi_timescale(
        402, timesteps=128, num_classes=num_classes, seed=5
    )
    assert x.shape == (402, 128, 2) and x.dtype == np.float32
    assert y.shape == (402,) and y.dtype == np.int32
    np.testing.assert_array_equal(y, _multi_timescale_rule(x, 16, num_classes))
    counts = np.bincount(y, minlength=num_classes)
    assert counts.max() - counts.min() <= 1
    # The slow pulse lies in the first quarter, the burst at the end.
    assert np.abs(x[:, 32:, 0]).max() < 0.7
    assert np.abs(x[:, :-16, 1]).max() < 0.7
    # Both features carry information: each alone is at chance for XOR.
    if num_classes == 2:
        slow = _multi_timescale_rule(x, 16, 4) // 2
        assert abs(np.mean(slow == y) - 0.5) < 0.1


# ----------------------------------------------------------------- digits


def test_digits_sequences_permutation_and_upsampling():
    pytest.importorskip("sklearn")
    (xs, ys), (xs_test, ys_test) = datasets.digits(seed=3)
    (xp, yp), (xp_test, _) = datasets.digits(permuted=True, seed=3)
    (xu, yu), _ = datasets.digits(upsample=3, seed=3)
    assert xs.shape == (1438, 64, 1) and xs_test.shape == (359, 64, 1)
    assert xs.dtype == np.float32 and ys.dtype == np.int32
    assert xs.min() == 0.0 and xs.max() == 1.0
    from sklearn.datasets import load_digits

    images = load_digits().images.reshape(-1, 64) / 16.0
    # Every sequence is an image in raster order.
    rows = {tuple(im) for im in images.astype("float32")}
    assert all(tuple(seq) in rows for seq in xs[:50, :, 0])
    permutation = datasets.sequence_permutation(64, seed=3)
    assert not np.array_equal(permutation, np.arange(64))
    np.testing.assert_array_equal(xp[:, np.argsort(permutation)], xs)
    np.testing.assert_array_equal(xp_test[:, np.argsort(permutation)], xs_test)
    np.testing.assert_array_equal(yp, ys)
    assert xu.shape == (1438, 192, 1)
    np.testing.assert_array_equal(xu[:, ::3], xs)
    np.testing.assert_array_equal(xu[:, 2::3], xs)
    np.testing.assert_array_equal(yu, ys)
    # Stratified: every class is in both splits in proportion.
    assert np.all(np.abs(np.bincount(ys_test) / np.bincount(ys) - 0.25) < 0.02)
    (_, ys_other), _ = datasets.digits(seed=4)
    assert not np.array_equal(ys, ys_other)


def test_digits_without_sklearn_names_the_install(monkeypatch):
    monkeypatch.setitem(sys.modules, "sklearn.datasets", None)
    with pytest.raises(ImportError, match="pip install scikit-learn"):
        datasets.digits()


# ---------------------------------------------------------------- listops


def _reference_value(tokens):
    """An independent evaluation: a stack machine over the tokens."""
    stack = []
    for token in tokens:
        if token in ("(", ")"):
            continue
        if token.startswith("["):
            stack.append([token[1:]])
        elif token == "]":
            op, *args = stack.pop()
            if op == "MAX":
                value = max(args)
            elif op == "MIN":
                value = min(args)
            elif op == "SM":
                value = sum(args) % 10
            else:
                ordered = sorted(args)
                middle = len(ordered) // 2
                if len(ordered) % 2:
                    value = ordered[middle]
                else:
                    value = (ordered[middle - 1] + ordered[middle]) // 2
            if not stack:
                return value
            stack[-1].append(value)
        else:
            stack[-1].append(int(token))
    raise AssertionError("unbalanced expression")


def _depth_and_arities(tokens):
    depth = max_depth = 0
    arities, counts = [], []
    for token in tokens:
        if token.startswith("["):
            if counts:
                counts[-1] += 1
            counts.append(0)
            depth += 1
            max_depth = max(max_depth, depth)
        elif token == "]":
            arities.append(counts.pop())
            depth -= 1
        else:
            counts[-1] += 1
    return max_depth, arities


@pytest.mark.parametrize(
    "max_length,max_depth,max_args,min_length",
    [(60, 3, 4, 1), (200, 6, 10, 50)],
)
def test_listops_values_and_limits(max_length, max_depth, max_args, min_length):
    x, y = datasets.listops(
        60, max_length, max_depth, max_args, min_length, seed=1
    )
    assert x.shape == (60, max_length) and x.dtype == np.int32
    assert y.shape == (60,) and y.dtype == np.int32
    depths = []
    for ids, value in zip(x, y):
        length = int(np.count_nonzero(ids))
        assert min_length <= length <= max_length
        np.testing.assert_array_equal(ids[length:], 0)  # padding at the end
        assert np.all(ids[:length] > 0)
        string = datasets.listops_to_string(ids)
        tokens = string.split()
        assert len(tokens) == length
        assert datasets.listops_evaluate(string) == value
        assert datasets.listops_evaluate(ids) == value
        assert _reference_value(tokens) == value
        depth, arities = _depth_and_arities(tokens)
        assert 1 <= depth <= max_depth
        assert 2 <= min(arities) and max(arities) <= max_args
        depths.append(depth)
    assert max(depths) > 1  # nested expressions do occur
    assert len(set(y.tolist())) > 3


def test_listops_known_values_and_round_trip():
    assert datasets.listops_evaluate("[MED 1 2 7 9 ]") == 4
    assert datasets.listops_evaluate("[MED 1 2 7 ]") == 2
    assert datasets.listops_evaluate("[SM 9 9 9 ]") == 7
    assert datasets.listops_evaluate("[MIN 4 [MAX 1 8 ] 6 ]") == 4
    # The LRA .tsv form, with parentheses.
    lra = "( ( ( ( [MAX 4 ) 3 ) ( ( [MIN 2 ) 3 ) ] ) ) ]"
    assert datasets.listops_evaluate(lra) == 4
    tree = ("SM", [3, ("MED", [1, 5, 8, 9, 2]), ("MIN", [7, 9])])
    string = datasets.listops_to_string(tree)
    assert string == "[SM 3 [MED 1 5 8 9 2 ] [MIN 7 9 ] ]"
    assert datasets.listops_evaluate(tree) == (3 + 5 + 7) % 10
    assert datasets.listops_evaluate(string) == 5
    vocabulary = datasets.LISTOPS_VOCABULARY
    assert vocabulary[0] == "<pad>" and len(set(vocabulary)) == 16
    ids = [vocabulary.index(token) for token in string.split()]
    assert datasets.listops_to_string(ids + [0, 0]) == string


# ----------------------------------------------------- real-data loaders


def test_smnist_flattens_and_permutes(monkeypatch):
    rng = np.random.default_rng(0)
    train = rng.integers(0, 256, (5, 28, 28)).astype("uint8")
    test = rng.integers(0, 256, (3, 28, 28)).astype("uint8")
    data = ((train, np.arange(5)), (test, np.arange(3)))
    monkeypatch.setattr(keras.datasets.mnist, "load_data", lambda: data)
    (x, y), (x_test, y_test) = datasets.smnist()
    assert x.shape == (5, 784, 1) and x_test.shape == (3, 784, 1)
    assert x.dtype == np.float32 and y.dtype == np.int32
    np.testing.assert_allclose(x[2, 28 * 3 + 5, 0], train[2, 3, 5] / 255.0)
    (xp, yp), (xp_test, _) = datasets.smnist(permuted=True, seed=7)
    permutation = datasets.sequence_permutation(784, seed=7)
    np.testing.assert_array_equal(xp[:, np.argsort(permutation)], x)
    np.testing.assert_array_equal(xp_test[:, np.argsort(permutation)], x_test)
    np.testing.assert_array_equal(yp, y)
    (xq, _), _ = datasets.smnist(permuted=True, seed=8)
    assert not np.array_equal(xq, xp)


def test_scifar_flattens_in_raster_order(monkeypatch):
    rng = np.random.default_rng(0)
    train = rng.integers(0, 256, (4, 32, 32, 3)).astype("uint8")
    test = rng.integers(0, 256, (2, 32, 32, 3)).astype("uint8")
    data = ((train, np.arange(4)[:, None]), (test, np.arange(2)[:, None]))
    monkeypatch.setattr(keras.datasets.cifar10, "load_data", lambda: data)
    (x, y), (x_test, y_test) = datasets.scifar()
    assert x.shape == (4, 1024, 3) and y.shape == (4,) and y.dtype == np.int32
    np.testing.assert_allclose(x[1, 32 * 7 + 2], train[1, 7, 2] / 255.0)
    (xg, _), _ = datasets.scifar(grayscale=True)
    assert xg.shape == (4, 1024, 1)
    np.testing.assert_allclose(
        xg[..., 0], x @ np.array([0.2989, 0.587, 0.114]), rtol=1e-5
    )


def _write_wav(path, samples, rate=100, channels=1):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with wave.open(str(path), "wb") as f:
        f.setnchannels(channels)
        f.setsampwidth(2)
        f.setframerate(rate)
        f.writeframes(np.asarray(samples, dtype="<i2").tobytes())


def test_speech_commands_reads_pads_and_trims(tmp_path):
    _write_wav(tmp_path / "yes" / "b.wav", np.full(150, 16384))
    _write_wav(tmp_path / "yes" / "a.wav", [-32768, 32767, 0])
    _write_wav(tmp_path / "no" / "c.wav", np.arange(100))
    _write_wav(tmp_path / "_background_noise_" / "n.wav", np.zeros(300))
    (tmp_path / "no" / "README.md").write_text("not audio")
    x, y, class_names = datasets.speech_commands(tmp_path, sample_rate=100)
    assert class_names == ["no", "yes"]
    assert x.shape == (3, 100, 1) and x.dtype == np.float32
    np.testing.assert_array_equal(y, [0, 1, 1])
    np.testing.assert_allclose(x[0, :, 0], np.arange(100) / 32768.0)
    np.testing.assert_allclose(x[1, :3, 0], [-1.0, 32767 / 32768, 0.0])
    np.testing.assert_array_equal(x[1, 3:], 0.0)  # padded
    np.testing.assert_array_equal(x[2], 0.5)  # trimmed
    assert np.abs(x).max() <= 1.0
    x, y, class_names = datasets.speech_commands(
        tmp_path, labels=["yes"], sample_rate=100, duration=0.5
    )
    assert x.shape == (2, 50, 1) and class_names == ["yes"]
    np.testing.assert_array_equal(y, [0, 0])


def test_speech_commands_subsets_and_bad_files(tmp_path):
    for name in ("a", "b", "c"):
        _write_wav(tmp_path / "up" / f"{name}.wav", np.zeros(10))
    (tmp_path / "validation_list.txt").write_text("up/b.wav\n")
    (tmp_path / "testing_list.txt").write_text("up/c.wav\n")
    sizes = {
        subset: len(
            datasets.speech_commands(tmp_path, sample_rate=100, subset=subset)[
                0
            ]
        )
        for subset in ("training", "validation", "testing")
    }
    assert sizes == {"training": 1, "validation": 1, "testing": 1}
    with pytest.raises(ValueError, match="Invalid `subset`"):
        datasets.speech_commands(tmp_path, sample_rate=100, subset="dev")
    with pytest.raises(ValueError, match="Invalid `labels`"):
        datasets.speech_commands(tmp_path, labels=["down"], sample_rate=100)
    with pytest.raises(ValueError, match="100 Hz"):
        datasets.speech_commands(tmp_path, sample_rate=200)
    _write_wav(tmp_path / "up" / "d.wav", np.zeros(20), channels=2)
    with pytest.raises(ValueError, match="mono"):
        datasets.speech_commands(tmp_path, sample_rate=100)


def test_speech_commands_tfds_without_tfds(monkeypatch):
    monkeypatch.setitem(sys.modules, "tensorflow_datasets", None)
    with pytest.raises(ImportError, match="pip install"):
        datasets.speech_commands_tfds()
