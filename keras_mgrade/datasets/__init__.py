"""Sequence datasets for mGRADE experiments: numpy-only generators
(deterministic by `seed`, nothing downloaded) and thin loaders of real
data.

Synthetic tasks:
- `lorenz`: the partially observed Lorenz-63 system (reconstruct the
  unobserved coordinates, or forecast the state).
- `flip_flop`: the flip-flop language (remember the last written bit).
- `selective_copy`: Mamba's selective copying.
- `multi_timescale`: classification needing a short delay line and a long
  memory.
- `cued_lorenz`, `lorenz_sample_hold`, `tone_flip_flop`: tasks that
  need a fast delay embedding and a memory of hundreds of steps at once.
- `listops`: Long Range Arena ListOps, with `listops_evaluate` and
  `listops_to_string`.

Real data (imported lazily): `digits` (scikit-learn's 8x8 digits as
sequences), `smnist` and `scifar` (via `keras.datasets`),
`speech_commands` (a local folder of WAV files) and
`speech_commands_tfds` (TensorFlow Datasets).
"""

from keras_mgrade.datasets.images import digits
from keras_mgrade.datasets.images import scifar
from keras_mgrade.datasets.images import sequence_permutation
from keras_mgrade.datasets.images import smnist
from keras_mgrade.datasets.listops import LISTOPS_VOCABULARY
from keras_mgrade.datasets.listops import listops
from keras_mgrade.datasets.listops import listops_evaluate
from keras_mgrade.datasets.listops import listops_to_string
from keras_mgrade.datasets.lorenz import LORENZ_MEAN
from keras_mgrade.datasets.lorenz import LORENZ_STD
from keras_mgrade.datasets.lorenz import lorenz
from keras_mgrade.datasets.lorenz import lorenz_derivative
from keras_mgrade.datasets.multiscale import cued_lorenz
from keras_mgrade.datasets.multiscale import lorenz_sample_hold
from keras_mgrade.datasets.multiscale import tone_flip_flop
from keras_mgrade.datasets.speech import speech_commands
from keras_mgrade.datasets.speech import speech_commands_tfds
from keras_mgrade.datasets.synthetic import flip_flop
from keras_mgrade.datasets.synthetic import multi_timescale
from keras_mgrade.datasets.synthetic import selective_copy

__all__ = [
    "LISTOPS_VOCABULARY",
    "LORENZ_MEAN",
    "LORENZ_STD",
    "cued_lorenz",
    "digits",
    "flip_flop",
    "listops",
    "listops_evaluate",
    "listops_to_string",
    "lorenz",
    "lorenz_derivative",
    "lorenz_sample_hold",
    "multi_timescale",
    "scifar",
    "selective_copy",
    "sequence_permutation",
    "smnist",
    "speech_commands",
    "speech_commands_tfds",
    "tone_flip_flop",
]
