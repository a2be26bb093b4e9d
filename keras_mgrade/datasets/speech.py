"""Speech Commands (Warden, 2018) keyword spotting, from a local folder or
from TensorFlow Datasets."""

import os
import wave

import numpy as np

from keras_mgrade.datasets import _checks

SUBSETS = ("training", "validation", "testing")


def _read_wav(path, sample_rate):
    """A 16-bit PCM mono WAV file as float32 samples in [-1, 1)."""
    try:
        with wave.open(path, "rb") as f:
            channels = f.getnchannels()
            width = f.getsampwidth()
            rate = f.getframerate()
            promised = f.getnframes()
            frames = f.readframes(promised)
    except (wave.Error, EOFError) as error:
        _checks.fail("directory", path, f"a readable WAV file ({error})")
    if len(frames) != promised * channels * width:
        _checks.fail(
            "directory",
            path,
            f"complete WAV files (this one is truncated: its header "
            f"promises {promised} frames, its data hold "
            f"{len(frames) // max(channels * width, 1)})",
        )
    if channels != 1 or width != 2 or rate != sample_rate:
        _checks.fail(
            "directory",
            path,
            f"16-bit PCM mono WAV files at {sample_rate} Hz (this one: "
            f"{channels} channel(s), {8 * width}-bit, {rate} Hz)",
        )
    return np.frombuffer(frames, dtype="<i2").astype("float32") / 32768.0


def _fit(samples, length):
    """Pads (zeros at the end) or trims to `length` samples."""
    if len(samples) >= length:
        return samples[:length]
    return np.pad(samples, (0, length - len(samples)))


def _read_list(directory, name):
    path = os.path.join(directory, name)
    if not os.path.isfile(path):
        _checks.fail(
            "subset", name, f"a list file {path!r} in `directory` (missing)"
        )
    with open(path) as f:
        return {os.path.normpath(line.strip()) for line in f if line.strip()}


def speech_commands(
    directory,
    labels=None,
    sample_rate=16000,
    duration=1.0,
    subset=None,
):
    """Keyword spotting clips from a Speech Commands folder.

    Reads `directory/<label>/*.wav`, 16-bit PCM mono WAV files (the
    layout of the Speech Commands archive, Warden 2018), with the standard
    library `wave` module. Each clip is scaled to `[-1, 1)` (divided by
    32768) and zero-padded at the end or trimmed to
    `round(duration * sample_rate)` samples (1 s by default).

    With `subset`, the archive's `validation_list.txt` and
    `testing_list.txt` (paths `<label>/<file>.wav` relative to `directory`)
    select the split; `"training"` is every file in neither list.

    Args:
        directory: str or path-like, the dataset folder.
        labels: None or a sequence of folder names, the classes in the
            order of their ids. Defaults to `None`: every subfolder not
            starting with `_` (e.g. `_background_noise_`), sorted.
        sample_rate: int >= 1, the expected sample rate in Hz (other files
            raise). Defaults to `16000`.
        duration: float > 0, the clip length in seconds. Defaults to `1.0`.
        subset: None, `"training"`, `"validation"` or `"testing"`.
            Defaults to `None` (every file).

    Returns:
        A tuple `(x, y, class_names)`: `x` float32 `(n, samples, 1)`, `y`
        int32 `(n,)` indices into `class_names`, the list of labels. Files
        are ordered by label, then by file name.

    Example:

    >>> import os, tempfile, wave
    >>> root = tempfile.mkdtemp()
    >>> os.mkdir(os.path.join(root, "yes"))
    >>> with wave.open(os.path.join(root, "yes", "a.wav"), "wb") as f:
    ...     f.setnchannels(1); f.setsampwidth(2); f.setframerate(16000)
    ...     f.writeframes(bytes(2 * 8000))  # 0.5 s of silence
    >>> x, y, class_names = speech_commands(root)
    >>> x.shape, y.tolist(), class_names
    ((1, 16000, 1), [0], ['yes'])
    >>> import shutil; shutil.rmtree(root)
    """
    if not isinstance(directory, (str, os.PathLike)) or not os.path.isdir(
        directory
    ):
        _checks.fail("directory", directory, "an existing folder")
    directory = os.fspath(directory)
    sample_rate = _checks.check_int("sample_rate", sample_rate)
    duration = _checks.check_float(
        "duration", duration, 0.0, np.inf, low_open=True
    )
    length = max(1, int(round(duration * sample_rate)))
    if subset is not None and subset not in SUBSETS:
        _checks.fail("subset", subset, f"None or one of {SUBSETS}")
    if labels is None:
        labels = sorted(
            name
            for name in os.listdir(directory)
            if not name.startswith("_")
            and os.path.isdir(os.path.join(directory, name))
        )
        if not labels:
            _checks.fail(
                "directory", directory, "a folder with label subfolders"
            )
    else:
        if isinstance(labels, str):
            _checks.fail("labels", labels, "a sequence of folder names")
        labels = list(labels)
        missing = [
            label
            for label in labels
            if not isinstance(label, str)
            or not os.path.isdir(os.path.join(directory, label))
        ]
        if not labels or missing or len(set(labels)) != len(labels):
            _checks.fail(
                "labels",
                labels,
                "a non-empty sequence of distinct subfolders of `directory`",
            )
    held_out = {}
    if subset is not None:
        held_out = {
            "validation": _read_list(directory, "validation_list.txt"),
            "testing": _read_list(directory, "testing_list.txt"),
        }
    clips, ids = [], []
    for label_id, label in enumerate(labels):
        folder = os.path.join(directory, label)
        for name in sorted(os.listdir(folder)):
            if not name.lower().endswith(".wav"):
                continue
            relative = os.path.normpath(os.path.join(label, name))
            if subset == "training":
                if any(relative in files for files in held_out.values()):
                    continue
            elif subset is not None and relative not in held_out[subset]:
                continue
            samples = _read_wav(os.path.join(folder, name), sample_rate)
            clips.append(_fit(samples, length))
            ids.append(label_id)
    x = np.zeros((len(clips), length, 1), dtype="float32")
    if clips:
        x[..., 0] = np.stack(clips)
    return x, np.asarray(ids, dtype="int32"), list(labels)


def speech_commands_tfds(split="train", duration=1.0, sample_rate=16000):
    """Speech Commands from TensorFlow Datasets (downloads on first use).

    Loads `tfds.load("speech_commands", split=split, as_supervised=True)`
    (12 classes: 10 words, `_silence_`, `_unknown_`) into memory, scaled to
    `[-1, 1)` and padded or trimmed to `round(duration * sample_rate)`
    samples. Needs `tensorflow` and `tensorflow-datasets`, imported only
    here.

    Args:
        split: str, a TFDS split such as `"train"`, `"validation"`,
            `"test"` or `"train[:10%]"`. Defaults to `"train"`.
        duration: float > 0, the clip length in seconds. Defaults to `1.0`.
        sample_rate: int >= 1, the sample rate of the clips (16 kHz in
            the dataset). Defaults to `16000`.

    Returns:
        A tuple `(x, y, class_names)` as in `speech_commands`.

    Raises:
        ImportError: if `tensorflow-datasets` is not installed.

    Example:

    >>> x, y, names = speech_commands_tfds("test")  # doctest: +SKIP
    >>> x.shape  # doctest: +SKIP
    (4890, 16000, 1)
    """
    if not isinstance(split, str) or not split:
        _checks.fail("split", split, "a TFDS split string such as 'train'")
    sample_rate = _checks.check_int("sample_rate", sample_rate)
    duration = _checks.check_float(
        "duration", duration, 0.0, np.inf, low_open=True
    )
    length = max(1, int(round(duration * sample_rate)))
    try:
        import tensorflow_datasets as tfds
    except ImportError as error:
        raise ImportError(
            "`speech_commands_tfds` needs TensorFlow Datasets: "
            "`pip install tensorflow tensorflow-datasets` (or use "
            "`speech_commands(directory)` on the extracted archive)."
        ) from error
    dataset, info = tfds.load(
        "speech_commands", split=split, as_supervised=True, with_info=True
    )
    clips, ids = [], []
    for audio, label in tfds.as_numpy(dataset):
        samples = np.asarray(audio, dtype="float32").reshape(-1) / 32768.0
        clips.append(_fit(samples, length))
        ids.append(int(label))
    x = np.zeros((len(clips), length, 1), dtype="float32")
    if clips:
        x[..., 0] = np.stack(clips)
    class_names = list(info.features["label"].names)
    return x, np.asarray(ids, dtype="int32"), class_names
