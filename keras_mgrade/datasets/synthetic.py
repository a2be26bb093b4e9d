"""Synthetic memory tasks: flip-flop, selective copying, multi-timescale."""

import numpy as np

from keras_mgrade.datasets import _checks

# Flip-flop instructions, in the order of the one-hot input channels.
WRITE, IGNORE, READ = 0, 1, 2


def flip_flop(
    num_sequences,
    timesteps,
    num_bits=1,
    p_write=0.1,
    p_read=0.1,
    seed=0,
):
    """The flip-flop language (Liu et al., 2023, "Exposing Attention
    Glitches with Flip-Flop Language Modeling").

    Each step carries an instruction, `write`, `ignore` or `read`, and
    `num_bits` bits. A `write` stores its bits, an `ignore` carries random
    distractor bits, a `read` carries no information (its bits are 0) and
    asks for the bits of the most recent `write`. The first step is always
    a `write` (so every read has an answer); the others are `write` with
    probability `p_write`, `read` with probability `p_read` and `ignore`
    otherwise. The defaults (`p_write = p_read = 0.1`) are the paper's
    sparse FFL(0.8), where most steps are distractors.

    Inputs, per step: channels 0-2 are the one-hot instruction
    (`write`, `ignore`, `read`), channels `3 ... 3 + num_bits - 1` the bits
    in `{0, 1}`.

    Args:
        num_sequences: int >= 1, the number of sequences.
        timesteps: int >= 1, the length of each sequence.
        num_bits: int >= 1, the number of bits written per step. Defaults
            to `1`.
        p_write: float in `(0, 1]`, the probability of a `write` at steps
            `t >= 1`. Defaults to `0.1`.
        p_read: float in `[0, 1]`, the probability of a `read` at steps
            `t >= 1`; `p_write + p_read <= 1`. Defaults to `0.1`.
        seed: int >= 0, the random seed. Defaults to `0`.

    Returns:
        A tuple `(x, y, mask)` of float32 arrays:
        - `x`: `(num_sequences, timesteps, 3 + num_bits)`, the inputs.
        - `y`: `(num_sequences, timesteps, num_bits)`, the bits of the last
          `write` at or before each step (the targets; meaningful at the
          read steps, where the model must produce them, and defined at
          every step).
        - `mask`: `(num_sequences, timesteps)`, 1 at the read steps and 0
          elsewhere, e.g. the `sample_weight` of a per-step loss.

    Example:

    >>> x, y, mask = flip_flop(2, 50)
    >>> x.shape, y.shape, mask.shape
    ((2, 50, 4), (2, 50, 1), (2, 50))
    >>> bool(np.all(x[:, 0, 0] == 1))  # the first step writes
    True
    """
    num_sequences = _checks.check_int("num_sequences", num_sequences)
    timesteps = _checks.check_int("timesteps", timesteps)
    num_bits = _checks.check_int("num_bits", num_bits)
    p_write = _checks.check_float("p_write", p_write, 0.0, 1.0, low_open=True)
    p_read = _checks.check_float("p_read", p_read, 0.0, 1.0)
    if p_write + p_read > 1.0:
        _checks.fail(
            "p_read", p_read, f"a float <= 1 - p_write = {1.0 - p_write}"
        )
    rng = _checks.check_seed(seed)
    p_ignore = max(0.0, 1.0 - p_write - p_read)
    instructions = rng.choice(
        3, size=(num_sequences, timesteps), p=[p_write, p_ignore, p_read]
    )
    instructions[:, 0] = WRITE
    bits = rng.integers(0, 2, size=(num_sequences, timesteps, num_bits))
    is_read = instructions == READ
    bits[is_read] = 0
    # The index of the last write at or before each step.
    steps = np.arange(timesteps)[None, :]
    last_write = np.maximum.accumulate(
        np.where(instructions == WRITE, steps, 0), axis=1
    )
    y = np.take_along_axis(bits, last_write[..., None], axis=1)
    x = np.concatenate([np.eye(3)[instructions], bits], axis=-1)
    return x.astype("float32"), y.astype("float32"), is_read.astype("float32")


def selective_copy(
    num_sequences,
    timesteps,
    num_tokens=16,
    vocabulary_size=8,
    seed=0,
):
    """Selective copying (Gu & Dao, 2023, "Mamba").

    `num_tokens` data tokens, drawn uniformly from `1 ... vocabulary_size`,
    are scattered at random (sorted, distinct) positions among blank
    tokens `0` in the first `timesteps - num_tokens` steps; the last
    `num_tokens` steps are marker tokens `vocabulary_size + 1` that ask for
    the data tokens in order. Unlike plain copying, the positions vary,
    so the model must select by content, not by time.

    Token ids: `0` blank, `1 ... vocabulary_size` data,
    `vocabulary_size + 1` marker (an embedding needs
    `vocabulary_size + 2` inputs). The targets are data token ids, e.g.
    `y - 1` for `vocabulary_size` output classes.

    Args:
        num_sequences: int >= 1, the number of sequences.
        timesteps: int >= `2 * num_tokens`, the sequence length (markers
            included).
        num_tokens: int >= 1, the number of tokens to copy. Defaults to
            `16`.
        vocabulary_size: int >= 1, the number of distinct data tokens.
            Defaults to `8`.
        seed: int >= 0, the random seed. Defaults to `0`.

    Returns:
        A tuple `(x, y)` of int32 arrays: `x` `(num_sequences, timesteps)`
        the token ids, `y` `(num_sequences, num_tokens)` the data tokens in
        the order they appear.

    Example:

    >>> x, y = selective_copy(3, 40, num_tokens=4)
    >>> x.shape, y.shape
    ((3, 40), (3, 4))
    >>> bool(np.all(x[:, -4:] == 9))  # the markers
    True
    """
    num_sequences = _checks.check_int("num_sequences", num_sequences)
    num_tokens = _checks.check_int("num_tokens", num_tokens)
    vocabulary_size = _checks.check_int("vocabulary_size", vocabulary_size)
    timesteps = _checks.check_int(
        "timesteps", timesteps, minimum=2 * num_tokens
    )
    rng = _checks.check_seed(seed)
    span = timesteps - num_tokens
    # Distinct sorted positions: the num_tokens smallest keys of a random
    # permutation of the span.
    keys = rng.random((num_sequences, span))
    positions = np.sort(np.argsort(keys, axis=1)[:, :num_tokens], axis=1)
    y = rng.integers(1, vocabulary_size + 1, size=(num_sequences, num_tokens))
    x = np.zeros((num_sequences, timesteps), dtype="int32")
    np.put_along_axis(x, positions, y, axis=1)
    x[:, span:] = vocabulary_size + 1
    return x, y.astype("int32")


def multi_timescale(
    num_sequences,
    timesteps=256,
    num_classes=4,
    burst_length=16,
    pulse_length=8,
    noise=0.1,
    seed=0,
):
    """A classification task that needs both a short and a long memory.

    Two input channels, each with Gaussian noise of standard deviation
    `noise`:

    - Channel 0, the slow feature: a pulse of `pulse_length` steps of
      amplitude `+1` (`slow_bit = 1`) or `-1` (`slow_bit = 0`) starting at
      a random step, entirely within the first quarter
      (`t < timesteps // 4`), otherwise 0. It must be remembered for
      `3/4 timesteps - burst_length` steps or more.
    - Channel 1, the fast feature: 0 except during the last
      `burst_length` steps, a burst of a square wave of amplitude 1 and
      random phase that alternates every step (period 2,
      `fast_bit = 1`) or every 4 steps (period 8, `fast_bit = 0`). Any
      single step looks alike; telling them apart needs a few steps of
      context (a short delay line).

    The label is `2 * slow_bit + fast_bit` for `num_classes=4`, and
    `slow_bit XOR fast_bit` for `num_classes=2` (still both features). The
    classes are balanced (their counts differ by at most 1).

    The rule that recomputes the labels from the inputs (exact for small
    `noise`, e.g. the default): `slow_bit = 1` iff the channel 0 value
    of largest magnitude in the first quarter is positive; `fast_bit = 1`
    iff channel 1 changes sign at least `burst_length / 2` times within the
    burst (period 2: `burst_length - 1` changes; period 8: at most
    `burst_length / 4 + 1`).

    A small recurrent model learns it well above chance: e.g. a
    `keras.layers.GRU(32)` reaches > 80% test accuracy within a minute of
    CPU training on 2000 sequences of 128 steps.

    Args:
        num_sequences: int >= 1, the number of sequences.
        timesteps: int >= `max(2 * burst_length, 4 * pulse_length)`, the
            sequence length. Defaults to `256`.
        num_classes: 2 or 4. Defaults to `4`.
        burst_length: int >= 4, the length of the final burst. Defaults to
            `16`.
        pulse_length: int >= 1, the length of the slow pulse; shorter
            pulses are harder to learn (a GRU learns 8 steps in seconds,
            1 step much more slowly). Defaults to `8`.
        noise: float >= 0, the noise standard deviation. Defaults to
            `0.1`.
        seed: int >= 0, the random seed. Defaults to `0`.

    Returns:
        A tuple `(x, y)`: `x` float32 `(num_sequences, timesteps, 2)`,
        `y` int32 `(num_sequences,)` labels in `0 ... num_classes - 1`.

    Example:

    >>> x, y = multi_timescale(8, timesteps=64)
    >>> x.shape, y.shape
    ((8, 64, 2), (8,))
    >>> np.bincount(y).tolist()
    [2, 2, 2, 2]
    """
    num_sequences = _checks.check_int("num_sequences", num_sequences)
    if num_classes not in (2, 4) or isinstance(num_classes, bool):
        _checks.fail("num_classes", num_classes, "2 or 4")
    burst_length = _checks.check_int("burst_length", burst_length, minimum=4)
    pulse_length = _checks.check_int("pulse_length", pulse_length)
    timesteps = _checks.check_int(
        "timesteps",
        timesteps,
        minimum=max(2 * burst_length, 4 * pulse_length),
    )
    noise = _checks.check_float("noise", noise, 0.0, np.inf)
    rng = _checks.check_seed(seed)
    labels = rng.permutation(np.arange(num_sequences) % num_classes)
    if num_classes == 4:
        slow_bit, fast_bit = labels // 2, labels % 2
    else:
        # Label = slow XOR fast: draw the slow bit, deduce the fast one.
        slow_bit = rng.integers(0, 2, size=num_sequences)
        fast_bit = labels ^ slow_bit
    x = np.zeros((num_sequences, timesteps, 2))
    rows = np.arange(num_sequences)
    pulse_time = rng.integers(
        0, timesteps // 4 - pulse_length + 1, size=num_sequences
    )
    pulse_steps = pulse_time[:, None] + np.arange(pulse_length)[None, :]
    x[rows[:, None], pulse_steps, 0] = (2.0 * slow_bit - 1.0)[:, None]
    # Square waves: period 2 (half period 1) or 8 (half period 4).
    half_period = np.where(fast_bit == 1, 1, 4)[:, None]
    phase = rng.integers(0, 8, size=(num_sequences, 1))
    steps = np.arange(burst_length)[None, :] + phase
    wave = np.where((steps // half_period) % 2 == 0, 1.0, -1.0)
    x[:, timesteps - burst_length :, 1] = wave
    x += noise * rng.standard_normal(x.shape)
    return x.astype("float32"), labels.astype("int32")
