"""Property tests of the multi-timescale tasks: each target recomputed from
the generator's inputs (or the Lorenz trajectories) another way."""

import numpy as np
import pytest

from keras_mgrade import datasets

GENERATORS = {
    "cued_lorenz": lambda seed: datasets.cued_lorenz(4, 40, seed=seed),
    "lorenz_sample_hold": lambda seed: datasets.lorenz_sample_hold(
        3, 80, min_gap=10, max_gap=20, seed=seed
    ),
    "tone_flip_flop": lambda seed: datasets.tone_flip_flop(
        3, 80, min_gap=10, max_gap=30, seed=seed
    ),
}


@pytest.mark.parametrize("name", sorted(GENERATORS))
def test_deterministic_by_seed(name):
    make = GENERATORS[name]
    first, again, other = make(3), make(3), make(4)
    for a, b in zip(first, again):
        np.testing.assert_array_equal(a, b)
    assert any(not np.array_equal(a, b) for a, b in zip(first, other))


def test_cued_lorenz_targets_follow_the_cue():
    n, steps = 9, 64
    x, y, choice = datasets.cued_lorenz(n, steps, noise=0.0, seed=5)
    clean_x, yz = datasets.lorenz(n, steps, dt=0.04, seed=5)
    np.testing.assert_array_equal(x[..., :1], clean_x)
    assert sorted(np.bincount(choice).tolist()) == [4, 5]
    # The cue: 4 steps of +-1 in the first 16, its sign the choice.
    cue = x[..., 1]
    assert np.all(np.sum(cue != 0, axis=1) == 4)
    assert np.all(cue[:, 16:] == 0)
    np.testing.assert_array_equal(np.sign(cue.sum(1)), 2 * choice - 1)
    for row in range(n):
        expected = yz[row, :, 0] if choice[row] == 1 else yz[row, :, 1]
        np.testing.assert_array_equal(y[row, :, 0], expected)


def test_cued_lorenz_noise_on_inputs_only():
    clean, y_clean, _ = datasets.cued_lorenz(64, 100, noise=0.0, seed=1)
    noisy, y_noisy, _ = datasets.cued_lorenz(64, 100, noise=0.3, seed=1)
    np.testing.assert_array_equal(y_clean, y_noisy)
    assert abs(np.std(noisy - clean) - 0.3) < 0.01


def test_sample_hold_targets_are_the_state_at_the_last_mark():
    n, steps = 6, 300
    x, y, mask = datasets.lorenz_sample_hold(
        n, steps, min_gap=40, max_gap=70, warmup=8, noise=0.0, seed=2
    )
    _, yz = datasets.lorenz(n, steps, dt=0.04, seed=2)
    for row in range(n):
        marks = np.flatnonzero(x[row, :, 1])
        assert np.all(x[row, marks, 1] == 1.0)
        assert 8 <= marks[0] < 16
        gaps = np.diff(marks)
        assert np.all((gaps >= 40) & (gaps <= 70))
        assert steps - marks[-1] <= 70
        np.testing.assert_array_equal(mask[row], np.arange(steps) >= marks[0])
        for t in range(steps):
            before = marks[marks <= t]
            expected = yz[row, before[-1]] if len(before) else np.zeros(2)
            np.testing.assert_array_equal(y[row, t], expected)


def _decode_tone(x, burst_length):
    """Re-derives the targets from noise-free inputs: a burst is a run of
    non-zero samples; its sign changes give the half period."""
    bit, ended = 0, -1
    y = np.zeros(len(x), "int32")
    mask = np.zeros(len(x), "float32")
    t = 0
    while t < len(x):
        if x[t] == 0:
            y[t] = bit
            t += 1
            continue
        burst = x[t : t + burst_length]
        changes = int(np.sum(np.diff(np.sign(burst)) != 0))
        end = t + burst_length - 1
        y[t:end] = bit  # the new bit counts once the burst has ended
        if changes == burst_length - 1:  # half period 1: write 1
            bit = 1
        elif changes >= burst_length // 2 - 1 and changes <= burst_length // 2:
            bit = 0  # half period 2
        else:  # half period 4: 1 or 2 changes, ignored
            assert changes <= burst_length // 4
        y[end] = bit
        if ended < 0:
            mask[end:] = 1.0
            ended = end
        t = end + 1
    return y, mask


def test_tone_flip_flop_targets_follow_the_writes():
    n, steps = 20, 400
    x, y, mask = datasets.tone_flip_flop(n, steps, noise=0.0, seed=3)
    amplitudes = np.abs(x[x != 0])
    assert amplitudes.min() >= 0.5 and amplitudes.max() <= 1.5
    for row in range(n):
        expected_y, expected_mask = _decode_tone(x[row, :, 0], 8)
        np.testing.assert_array_equal(y[row], expected_y)
        np.testing.assert_array_equal(mask[row], expected_mask)
    # Writes of both bits and distractors all occur.
    assert 0.3 < y[mask > 0].mean() < 0.7


BAD_ARGUMENTS = [
    (datasets.cued_lorenz, dict(num_sequences=0), "num_sequences"),
    (datasets.cued_lorenz, dict(num_sequences=2, timesteps=20), "timesteps"),
    (datasets.cued_lorenz, dict(num_sequences=2, dt=0.5), "dt"),
    (datasets.cued_lorenz, dict(num_sequences=2, noise=-1), "noise"),
    (
        datasets.cued_lorenz,
        dict(num_sequences=2, cue_window=3, cue_length=4),
        "cue_window",
    ),
    (datasets.cued_lorenz, dict(num_sequences=2, seed=-1), "seed"),
    (
        datasets.lorenz_sample_hold,
        dict(num_sequences=2, min_gap=10, max_gap=5),
        "max_gap",
    ),
    (datasets.lorenz_sample_hold, dict(num_sequences=2, warmup=0), "warmup"),
    (
        datasets.lorenz_sample_hold,
        dict(num_sequences=2, timesteps=10, warmup=8),
        "timesteps",
    ),
    (
        datasets.tone_flip_flop,
        dict(num_sequences=2, burst_length=4),
        "burst_length",
    ),
    (datasets.tone_flip_flop, dict(num_sequences=2, min_gap=4), "min_gap"),
    (
        datasets.tone_flip_flop,
        dict(num_sequences=2, p_distractor=1.0),
        "p_distractor",
    ),
    (datasets.tone_flip_flop, dict(num_sequences=2, timesteps=20), "timesteps"),
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
