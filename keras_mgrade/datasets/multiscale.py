"""Tasks that need a long memory and a fast delay embedding at once."""

import numpy as np

from keras_mgrade.datasets import _checks
from keras_mgrade.datasets.lorenz import lorenz

# Square-wave half periods of the tone flip-flop's bursts (in steps):
# write 1, write 0, distractor.
TONE_HALF_PERIODS = (1, 2, 4)


def _observed_lorenz(num_sequences, timesteps, dt, noise, seed):
    """Noisy x and clean (y, z), standardised, from `lorenz`."""
    x, yz = lorenz(num_sequences, timesteps, dt=dt, observed=0, seed=seed)
    noise_rng = np.random.default_rng([seed, 7])
    x = x + noise * noise_rng.standard_normal(x.shape)
    return x, yz


def cued_lorenz(
    num_sequences,
    timesteps=256,
    dt=0.04,
    noise=0.1,
    cue_window=16,
    cue_length=4,
    seed=0,
):
    """Reconstruct one hidden Lorenz coordinate, chosen by an early cue.

    Channel 0 is the x coordinate of the Lorenz-63 system (see `lorenz`,
    standardised) with Gaussian observation noise; channel 1 is 0 except
    for a cue of `cue_length` steps, somewhere in the first `cue_window`
    steps, of amplitude `+1` ("report y") or `-1` ("report z"), with the
    same noise. The target at every step is the chosen coordinate, y or z
    (standardised, clean). Two timescales at once: y and z are not
    functions of the current x, so the model needs a delay embedding of
    the last few samples of x (fast), and it must hold the cue for the
    rest of the sequence (up to `timesteps - cue_length` steps). Score the
    steps `t >= cue_window` (before that the cue may not have been shown).

    Args:
        num_sequences: int >= 1, the number of sequences.
        timesteps: int >= `2 * cue_window`, the length of each sequence.
            Defaults to `256`.
        dt: float > 0, the sampling interval of the Lorenz system.
            Defaults to `0.04`.
        noise: float >= 0, the standard deviation of the observation
            noise on both channels. Defaults to `0.1`.
        cue_window: int >= `cue_length`, the cue lies in steps
            `0 ... cue_window - 1`. Defaults to `16`.
        cue_length: int >= 1, the length of the cue. Defaults to `4`.
        seed: int >= 0, the random seed. Defaults to `0`.

    Returns:
        A tuple `(x, y, choice)`: `x` float32 `(num_sequences, timesteps,
        2)`, `y` float32 `(num_sequences, timesteps, 1)` the target, and
        `choice` int32 `(num_sequences,)`, 1 for y and 0 for z (balanced:
        the counts differ by at most 1).

    Example:

    >>> x, y, choice = cued_lorenz(4, 64)
    >>> x.shape, y.shape, sorted(choice.tolist())
    ((4, 64, 2), (4, 64, 1), [0, 0, 1, 1])
    """
    num_sequences = _checks.check_int("num_sequences", num_sequences)
    cue_length = _checks.check_int("cue_length", cue_length)
    cue_window = _checks.check_int("cue_window", cue_window, cue_length)
    timesteps = _checks.check_int("timesteps", timesteps, 2 * cue_window)
    dt = _checks.check_float("dt", dt, 0.0, 0.1, low_open=True)
    noise = _checks.check_float("noise", noise, 0.0, np.inf)
    rng = _checks.check_seed(seed)
    x, yz = _observed_lorenz(num_sequences, timesteps, dt, noise, seed)
    choice = rng.permutation(np.arange(num_sequences) % 2)
    start = rng.integers(0, cue_window - cue_length + 1, size=num_sequences)
    cue = np.zeros((num_sequences, timesteps))
    steps = start[:, None] + np.arange(cue_length)[None, :]
    rows = np.arange(num_sequences)[:, None]
    cue[rows, steps] = (2.0 * choice - 1.0)[:, None]
    cue += noise * rng.standard_normal(cue.shape)
    inputs = np.concatenate([x, cue[..., None]], axis=-1)
    # choice 1 -> y (column 0), choice 0 -> z (column 1).
    target = np.take_along_axis(yz, (1 - choice)[:, None, None], axis=-1)
    return (
        inputs.astype("float32"),
        target.astype("float32"),
        choice.astype("int32"),
    )


def _event_times(rng, timesteps, first, gaps):
    """Sorted event times: the first in `[0, first)`, then gaps drawn
    uniformly in `gaps` (inclusive), up to `timesteps`."""
    times = [int(rng.integers(0, first))]
    while True:
        nxt = times[-1] + int(rng.integers(gaps[0], gaps[1] + 1))
        if nxt >= timesteps:
            return times
        times.append(nxt)


def lorenz_sample_hold(
    num_sequences,
    timesteps=256,
    dt=0.04,
    noise=0.1,
    min_gap=64,
    max_gap=192,
    warmup=16,
    seed=0,
):
    """Sample the hidden Lorenz coordinates at marked steps and hold them.

    Channel 0 is the noisy x coordinate of the Lorenz-63 system (as in
    `cued_lorenz`); channel 1 is 0 except for one-step marks of amplitude
    1 (with the same noise). The first mark falls in steps
    `warmup ... 2 * warmup - 1`, the next ones `min_gap ... max_gap`
    steps apart. The targets at step `t` are the hidden coordinates y and
    z at the most recent mark at or before `t` (a continuous flip-flop):
    at each mark the model must reconstruct y and z from the recent
    history of x (a fast delay embedding), then hold the two numbers
    unchanged for up to `max_gap` steps while x keeps moving. Before the
    first mark the targets are 0 and the mask is 0.

    Args:
        num_sequences: int >= 1, the number of sequences.
        timesteps: int >= `2 * warmup`, the length of each sequence.
            Defaults to `256`.
        dt: float in (0, 0.1], the sampling interval. Defaults to `0.04`.
        noise: float >= 0, the observation noise. Defaults to `0.1`.
        min_gap: int >= 1, the smallest gap between marks. Defaults to
            `64`.
        max_gap: int >= `min_gap`, the largest gap. Defaults to `192`.
        warmup: int >= 1, steps of history before the first mark can
            fall. Defaults to `16`.
        seed: int >= 0, the random seed. Defaults to `0`.

    Returns:
        A tuple `(x, y, mask)` of float32 arrays: `x` `(num_sequences,
        timesteps, 2)`, `y` `(num_sequences, timesteps, 2)` the held (y, z)
        and `mask` `(num_sequences, timesteps)`, 1 from the first mark on.

    Example:

    >>> x, y, mask = lorenz_sample_hold(2, 200, min_gap=50, max_gap=60)
    >>> x.shape, y.shape, mask.shape
    ((2, 200, 2), (2, 200, 2), (2, 200))
    >>> t = int(np.argmax(x[0, :, 1] > 0.5))  # the first mark
    >>> bool(np.all(y[0, t:t + 50] == y[0, t]))
    True
    """
    num_sequences = _checks.check_int("num_sequences", num_sequences)
    warmup = _checks.check_int("warmup", warmup)
    timesteps = _checks.check_int("timesteps", timesteps, 2 * warmup)
    min_gap = _checks.check_int("min_gap", min_gap)
    max_gap = _checks.check_int("max_gap", max_gap, min_gap)
    dt = _checks.check_float("dt", dt, 0.0, 0.1, low_open=True)
    noise = _checks.check_float("noise", noise, 0.0, np.inf)
    rng = _checks.check_seed(seed)
    x, yz = _observed_lorenz(num_sequences, timesteps, dt, noise, seed)
    marks = np.zeros((num_sequences, timesteps))
    for row in range(num_sequences):
        gaps = (min_gap, max_gap)
        times = _event_times(rng, timesteps - warmup, warmup, gaps)
        marks[row, np.array(times) + warmup] = 1.0
    steps = np.arange(timesteps)[None, :]
    last = np.maximum.accumulate(np.where(marks > 0, steps, -1), axis=1)
    mask = last >= 0
    held = np.take_along_axis(yz, np.maximum(last, 0)[..., None], axis=1)
    held = held * mask[..., None]
    marks += noise * rng.standard_normal(marks.shape)
    inputs = np.concatenate([x, marks[..., None]], axis=-1)
    return (
        inputs.astype("float32"),
        held.astype("float32"),
        mask.astype("float32"),
    )


def tone_flip_flop(
    num_sequences,
    timesteps=256,
    burst_length=8,
    min_gap=32,
    max_gap=128,
    p_distractor=0.5,
    noise=0.2,
    seed=0,
):
    """A flip-flop whose instructions are fast tones in one channel.

    The single input channel is Gaussian noise (standard deviation
    `noise`) except during bursts of `burst_length` steps of a square
    wave of random phase and random amplitude in `[0.5, 1.5]`. Its half
    period says what the burst means: 1 step "write 1", 2 steps
    "write 0", 4 steps "ignore" (a distractor). Every sample of a burst
    is `+-amplitude`, so no single step tells the three apart: the model
    needs the pattern of the last few samples (a delay embedding). The
    first burst is a write that starts in the first 16 steps; the next
    ones start `min_gap ... max_gap` steps after the previous start, and
    each is a distractor with probability `p_distractor`, else a write of
    a random bit. The target at every step is the bit of the last write
    burst that has ended (held across distractors, for up to hundreds of
    steps), and the mask is 1 from the end of the first burst on.

    Args:
        num_sequences: int >= 1, the number of sequences.
        timesteps: int >= `16 + burst_length`, the length of each
            sequence. Defaults to `256`.
        burst_length: int >= 8, the length of each burst. Defaults to
            `8`.
        min_gap: int >= `burst_length`, the smallest gap between the
            starts of two bursts. Defaults to `32`.
        max_gap: int >= `min_gap`, the largest gap. Defaults to `128`.
        p_distractor: float in [0, 1), the probability that a burst after
            the first is a distractor. Defaults to `0.5`.
        noise: float >= 0, the noise standard deviation. Defaults to
            `0.2`.
        seed: int >= 0, the random seed. Defaults to `0`.

    Returns:
        A tuple `(x, y, mask)`: `x` float32 `(num_sequences, timesteps,
        1)`, `y` int32 `(num_sequences, timesteps)` the held bit, `mask`
        float32 `(num_sequences, timesteps)`.

    Example:

    >>> x, y, mask = tone_flip_flop(3, 100)
    >>> x.shape, y.shape, mask.shape
    ((3, 100, 1), (3, 100), (3, 100))
    >>> bool(np.all(mask[:, :8] == 0) and np.all(mask[:, -1] == 1))
    True
    """
    num_sequences = _checks.check_int("num_sequences", num_sequences)
    burst_length = _checks.check_int("burst_length", burst_length, 8)
    timesteps = _checks.check_int("timesteps", timesteps, 16 + burst_length)
    min_gap = _checks.check_int("min_gap", min_gap, burst_length)
    max_gap = _checks.check_int("max_gap", max_gap, min_gap)
    p_distractor = _checks.check_float(
        "p_distractor", p_distractor, 0.0, 1.0, high_open=True
    )
    noise = _checks.check_float("noise", noise, 0.0, np.inf)
    rng = _checks.check_seed(seed)
    x = noise * rng.standard_normal((num_sequences, timesteps))
    y = np.zeros((num_sequences, timesteps), "int32")
    mask = np.zeros((num_sequences, timesteps), "float32")
    span = np.arange(burst_length)
    for row in range(num_sequences):
        times = _event_times(
            rng, timesteps - burst_length + 1, 16, (min_gap, max_gap)
        )
        kinds = rng.choice(
            3, size=len(times), p=[(1 - p_distractor) / 2] * 2 + [p_distractor]
        )
        kinds[0] = rng.integers(0, 2)
        for start, kind in zip(times, kinds):
            half = TONE_HALF_PERIODS[kind]
            phase = rng.integers(0, 2 * half)
            wave = np.where(((span + phase) // half) % 2 == 0, 1.0, -1.0)
            x[row, start : start + burst_length] += rng.uniform(0.5, 1.5) * wave
            end = start + burst_length - 1
            if kind < 2:
                y[row, end:] = 1 - kind
        mask[row, times[0] + burst_length - 1 :] = 1.0
    return x[..., None].astype("float32"), y, mask
