"""Images read as sequences: digits, (p)sMNIST and sCIFAR.

`digits` uses the 8x8 digits bundled with scikit-learn (no download);
`smnist` and `scifar` call `keras.datasets`, which downloads the data on
first use. Keras and scikit-learn are imported only inside the functions.
"""

import numpy as np

from keras_mgrade.datasets import _checks


def sequence_permutation(length, seed=0):
    """The fixed permutation of a permuted-sequential task.

    Permuted data are `x_permuted[:, t] = x[:, permutation[t]]`, so that
    `x_permuted[:, np.argsort(permutation)]` is `x`.

    Args:
        length: int >= 1, the sequence length.
        seed: int >= 0, the seed of the permutation. Defaults to `0`.

    Returns:
        An int64 numpy array `(length,)`, a permutation of `0 ... length-1`.

    Example:

    >>> p = sequence_permutation(5, seed=0)
    >>> sorted(p.tolist())
    [0, 1, 2, 3, 4]
    """
    length = _checks.check_int("length", length)
    return _checks.check_seed(seed).permutation(length)


def _split(y, test_fraction, rng):
    """A stratified split: per class, `round(test_fraction * count)` test
    indices at random. Returns sorted (train, test) indices."""
    train, test = [], []
    for label in np.unique(y):
        members = rng.permutation(np.flatnonzero(y == label))
        num_test = int(round(test_fraction * len(members)))
        test.append(members[:num_test])
        train.append(members[num_test:])
    return np.sort(np.concatenate(train)), np.sort(np.concatenate(test))


def digits(permuted=False, upsample=1, seed=0, test_fraction=0.2):
    """Sequential (or permuted-sequential) 8x8 digits.

    The 1797 8x8 images of `sklearn.datasets.load_digits` (bundled with
    scikit-learn, no download), read pixel by pixel in raster order as
    sequences of 64 steps with 1 feature, the pixel value scaled to
    `[0, 1]` (divided by 16). A small, fast stand-in for sMNIST.

    With `permuted=True`, the steps are shuffled by the fixed permutation
    `sequence_permutation(64, seed)`. `upsample=k` then repeats every step
    `k` times (`T = 64 k`), which stretches the time dependencies.

    The split is stratified (each class contributes `round(test_fraction *
    count)` test images) and depends only on `seed` and `test_fraction`:
    the permuted and sequential versions of one seed hold the same images.

    Args:
        permuted: bool, whether to permute the pixels. Defaults to `False`.
        upsample: int >= 1, the number of repeats of each step. Defaults to
            `1`.
        seed: int >= 0, the seed of the split and of the permutation.
            Defaults to `0`.
        test_fraction: float in `(0, 1)`, the fraction of test images.
            Defaults to `0.2`.

    Returns:
        `((x_train, y_train), (x_test, y_test))`: `x` float32 `(n, 64 *
        upsample, 1)`, `y` int32 `(n,)` digits `0 ... 9`.

    Raises:
        ImportError: if scikit-learn is not installed.

    Example:

    >>> (x_train, y_train), (x_test, y_test) = digits(upsample=2)
    >>> x_train.shape, x_test.shape
    ((1438, 128, 1), (359, 128, 1))
    """
    if not isinstance(permuted, (bool, np.bool_)):
        _checks.fail("permuted", permuted, "a bool")
    upsample = _checks.check_int("upsample", upsample)
    test_fraction = _checks.check_float(
        "test_fraction", test_fraction, 0.0, 1.0, low_open=True, high_open=True
    )
    rng = _checks.check_seed(seed)
    permutation = sequence_permutation(64, seed)
    try:
        from sklearn.datasets import load_digits
    except ImportError as error:
        raise ImportError(
            "`keras_mgrade.datasets.digits` needs scikit-learn: "
            "`pip install scikit-learn`."
        ) from error
    data = load_digits()
    x = (data.images.reshape(-1, 64) / 16.0).astype("float32")
    y = data.target.astype("int32")
    if permuted:
        x = x[:, permutation]
    x = np.repeat(x, upsample, axis=1)[..., None]
    train, test = _split(y, test_fraction, rng)
    return (x[train], y[train]), (x[test], y[test])


def smnist(permuted=False, seed=0):
    """Sequential (or permuted-sequential) MNIST.

    The MNIST images of `keras.datasets.mnist.load_data()` (downloaded on
    first use) read pixel by pixel in raster order: 784 steps with 1
    feature in `[0, 1]`. With `permuted=True` (psMNIST), the steps are
    shuffled by the fixed permutation `sequence_permutation(784, seed)`, the
    same for the train and test sets.

    Args:
        permuted: bool, whether to permute the pixels. Defaults to `False`.
        seed: int >= 0, the seed of the permutation. Defaults to `0`.

    Returns:
        `((x_train, y_train), (x_test, y_test))`: `x` float32 `(n, 784, 1)`,
        `y` int32 `(n,)`.

    Example:

    >>> (x_train, y_train), (x_test, y_test) = smnist()  # doctest: +SKIP
    >>> x_train.shape  # doctest: +SKIP
    (60000, 784, 1)
    """
    if not isinstance(permuted, (bool, np.bool_)):
        _checks.fail("permuted", permuted, "a bool")
    permutation = sequence_permutation(784, seed)
    import keras

    (x_train, y_train), (x_test, y_test) = keras.datasets.mnist.load_data()

    def prepare(x, y):
        x = np.asarray(x, dtype="float32").reshape(len(x), -1) / 255.0
        if permuted:
            x = x[:, permutation]
        return x[..., None], np.asarray(y).reshape(-1).astype("int32")

    return prepare(x_train, y_train), prepare(x_test, y_test)


def scifar(grayscale=False):
    """Sequential CIFAR-10.

    The CIFAR-10 images of `keras.datasets.cifar10.load_data()`
    (downloaded on first use) read pixel by pixel in raster order: 1024
    steps with the 3 colour channels as features in `[0, 1]` (as in S4),
    or 1 feature with `grayscale=True` (luminance `0.2989 R + 0.587 G +
    0.114 B`, as in the Long Range Arena "Image" task).

    Args:
        grayscale: bool, whether to convert to 1 luminance channel.
            Defaults to `False`.

    Returns:
        `((x_train, y_train), (x_test, y_test))`: `x` float32
        `(n, 1024, 3)` (or `(n, 1024, 1)`), `y` int32 `(n,)`.

    Example:

    >>> (x_train, y_train), (x_test, y_test) = scifar()  # doctest: +SKIP
    >>> x_train.shape  # doctest: +SKIP
    (50000, 1024, 3)
    """
    if not isinstance(grayscale, (bool, np.bool_)):
        _checks.fail("grayscale", grayscale, "a bool")
    import keras

    (x_train, y_train), (x_test, y_test) = keras.datasets.cifar10.load_data()

    def prepare(x, y):
        x = np.asarray(x, dtype="float32").reshape(len(x), -1, 3) / 255.0
        if grayscale:
            x = x @ np.array([[0.2989], [0.587], [0.114]], dtype="float32")
        return x, np.asarray(y).reshape(-1).astype("int32")

    return prepare(x_train, y_train), prepare(x_test, y_test)
