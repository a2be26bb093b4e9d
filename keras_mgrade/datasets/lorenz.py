"""The partially observed Lorenz-63 system."""

import numbers

import numpy as np

from keras_mgrade.datasets import _checks

SIGMA = 10.0
RHO = 28.0
BETA = 8.0 / 3.0

# Standardisation constants: the mean and standard deviation of each
# coordinate over long reference trajectories (2 x 64 trajectories of 10^5
# RK4 steps at dt = 0.01 after a burn-in of 10^4 steps, 1.28 * 10^7 states;
# z mean 23.546, stds 7.924, 9.012, 8.626), rounded to 2 decimals. The mean
# of x and y is 0 by the symmetry (x, y) -> (-x, -y) of the system. Fixed,
# so that every call (train, test) uses the same scaling.
LORENZ_MEAN = np.array([0.0, 0.0, 23.55])
LORENZ_STD = np.array([7.92, 9.01, 8.63])

TASKS = ("reconstruct", "forecast")


def lorenz_derivative(state):
    """The right-hand side of the Lorenz-63 equations.

    `dx/dt = sigma (y - x)`, `dy/dt = x (rho - z) - y`,
    `dz/dt = x y - beta z`, with `sigma = 10`, `rho = 28`, `beta = 8 / 3`.

    Args:
        state: array-like `(..., 3)`, the (unstandardised) states
            `(x, y, z)`.

    Returns:
        A float numpy array of the same shape: the time derivatives.

    Example:

    >>> lorenz_derivative([1.0, 2.0, 3.0]).tolist()
    [10.0, 23.0, -6.0]
    """
    state = np.asarray(state)
    if state.ndim == 0 or state.shape[-1] != 3:
        raise ValueError(
            "Invalid `state`. Expected an array whose last dimension is 3 "
            f"(x, y, z). Received: state.shape={state.shape}"
        )
    x, y, z = state[..., 0], state[..., 1], state[..., 2]
    return np.stack(
        [SIGMA * (y - x), x * (RHO - z) - y, x * y - BETA * z], axis=-1
    )


def _rk4_step(state, dt):
    k1 = lorenz_derivative(state)
    k2 = lorenz_derivative(state + 0.5 * dt * k1)
    k3 = lorenz_derivative(state + 0.5 * dt * k2)
    k4 = lorenz_derivative(state + dt * k3)
    return state + (dt / 6.0) * (k1 + 2.0 * k2 + 2.0 * k3 + k4)


def _check_observed(observed):
    if isinstance(observed, numbers.Integral) and not isinstance(
        observed, bool
    ):
        observed = (observed,)
    try:
        values = tuple(observed)
    except TypeError:
        values = None
    ok = (
        values is not None
        and 1 <= len(values) <= 3
        and all(
            isinstance(v, numbers.Integral) and not isinstance(v, bool)
            for v in values
        )
        and all(0 <= v <= 2 for v in values)
        and len(set(values)) == len(values)
    )
    if not ok:
        _checks.fail(
            "observed",
            observed,
            "an int or a non-empty sequence of distinct coordinate indices "
            "in {0, 1, 2}",
        )
    return tuple(int(v) for v in values)


def _trajectories(num_sequences, num_steps, dt=0.01, burn_in=1000, seed=0):
    """Integrates the Lorenz-63 system from random initial conditions.

    Initial conditions are uniform in `[-20, 20] x [-20, 20] x [0, 50]`;
    each trajectory is advanced `burn_in` RK4 steps (which are dropped) so
    that it lies on the attractor, then `num_steps` states are recorded.

    Args:
        num_sequences: int >= 1, the number of trajectories.
        num_steps: int >= 1, the number of recorded states.
        dt: float > 0, the RK4 step (time between recorded states).
            Defaults to `0.01`.
        burn_in: int >= 0, the number of dropped initial steps. Defaults to
            `1000`.
        seed: int, the seed of the initial conditions. Defaults to `0`.

    Returns:
        A float64 numpy array `(num_sequences, num_steps, 3)` of
        unstandardised states `(x, y, z)`.

    Example:

    >>> s = _trajectories(2, 5)
    >>> s.shape
    (2, 5, 3)
    """
    num_sequences = _checks.check_int("num_sequences", num_sequences)
    num_steps = _checks.check_int("num_steps", num_steps)
    dt = _checks.check_float("dt", dt, 0.0, np.inf, low_open=True)
    burn_in = _checks.check_int("burn_in", burn_in, minimum=0)
    rng = _checks.check_seed(seed)
    state = rng.uniform(
        low=[-20.0, -20.0, 0.0],
        high=[20.0, 20.0, 50.0],
        size=(num_sequences, 3),
    )
    states = np.empty((num_sequences, num_steps, 3))
    # A too large `dt` overflows: reported below, not as warnings.
    with np.errstate(over="ignore", invalid="ignore"):
        for _ in range(burn_in):
            state = _rk4_step(state, dt)
        states[:, 0] = state
        for t in range(1, num_steps):
            state = _rk4_step(state, dt)
            states[:, t] = state
    if not np.all(np.isfinite(states)):
        _checks.fail(
            "dt", dt, "a smaller step (e.g. 0.01): the RK4 integration diverged"
        )
    return states


def lorenz(
    num_sequences,
    timesteps,
    dt=0.01,
    observed=0,
    task="reconstruct",
    horizon=1,
    burn_in=1000,
    noise=0.0,
    seed=0,
):
    """Partially observed Lorenz-63 sequences.

    The Lorenz-63 system (`sigma = 10`, `rho = 28`, `beta = 8 / 3`, see
    `lorenz_derivative`) is integrated with 4th-order Runge-Kutta at step
    `dt` from random initial conditions, dropping the first `burn_in`
    steps so that the trajectories lie on the attractor. The model sees
    only the `observed` coordinates and must infer the rest:

    - `task="reconstruct"`: the targets are the unobserved coordinates at
      the same step, `y[:, t] = state[t, unobserved]`.
    - `task="forecast"`: the targets are all three coordinates `horizon`
      steps ahead, `y[:, t] = state[t + horizon]`.

    Every coordinate is standardised as `(s - LORENZ_MEAN) / LORENZ_STD`
    with fixed constants (`LORENZ_MEAN = [0, 0, 23.55]`, `LORENZ_STD =
    [7.92, 9.01, 8.63]`, measured on a long reference trajectory), the same
    for every call, so separately generated splits share one scale. The
    state at step `t` is `x * LORENZ_STD + LORENZ_MEAN` on the observed
    coordinates. The trajectories depend only on `num_sequences`, `dt`,
    `burn_in` and `seed` (not on `task`, `horizon` or `observed`), so, for
    example, the forecast targets are the reconstruct state shifted by
    `horizon`.

    Args:
        num_sequences: int >= 1, the number of sequences.
        timesteps: int >= 1, the length of each sequence.
        dt: float > 0, the integration step and sampling interval.
            Defaults to `0.01`.
        observed: int or sequence of distinct ints in `{0, 1, 2}`, the
            observed coordinates (0 = x, 1 = y, 2 = z), in the order of the
            input channels. Defaults to `0` (x only).
        task: `"reconstruct"` or `"forecast"`. Defaults to `"reconstruct"`.
        horizon: int >= 1, the forecast horizon in steps (forecast only).
            Defaults to `1`.
        burn_in: int >= 0, the number of initial steps dropped. Defaults
            to `1000`.
        noise: float >= 0, the standard deviation of Gaussian observation
            noise added to the (standardised) inputs; the targets are
            clean. Defaults to `0.0`.
        seed: int, the random seed. Defaults to `0`.

    Returns:
        A tuple `(x, y)` of float32 arrays: `x` is
        `(num_sequences, timesteps, len(observed))`; `y` is
        `(num_sequences, timesteps, 3 - len(observed))` for
        `"reconstruct"` (the unobserved coordinates in increasing order)
        and `(num_sequences, timesteps, 3)` for `"forecast"`.

    Example:

    >>> x, y = lorenz(4, 100, observed=(0,))
    >>> x.shape, y.shape
    ((4, 100, 1), (4, 100, 2))
    >>> x, y = lorenz(4, 100, task="forecast", horizon=5)
    >>> y.shape
    (4, 100, 3)
    """
    num_sequences = _checks.check_int("num_sequences", num_sequences)
    timesteps = _checks.check_int("timesteps", timesteps)
    observed = _check_observed(observed)
    if task not in TASKS:
        _checks.fail("task", task, f"one of {TASKS}")
    if task == "reconstruct" and len(observed) == 3:
        _checks.fail(
            "observed",
            observed,
            "at most 2 observed coordinates with task='reconstruct' (some "
            "coordinate must be unobserved)",
        )
    horizon = _checks.check_int("horizon", horizon)
    noise = _checks.check_float("noise", noise, 0.0, np.inf)
    extra = horizon if task == "forecast" else 0
    states = _trajectories(
        num_sequences, timesteps + extra, dt=dt, burn_in=burn_in, seed=seed
    )
    z = (states - LORENZ_MEAN) / LORENZ_STD
    x = z[:, :timesteps, list(observed)]
    if task == "reconstruct":
        unobserved = [c for c in range(3) if c not in observed]
        y = z[:, :, unobserved]
    else:
        y = z[:, horizon:]
    if noise > 0:
        # Drawn from a stream of its own: the clean data do not depend on
        # the noise level.
        noise_rng = np.random.default_rng([int(seed), 1])
        x = x + noise * noise_rng.standard_normal(x.shape)
    return x.astype("float32"), y.astype("float32")
