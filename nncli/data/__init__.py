"""Data for ``nncli train``: built-in sets, user files, seeded splits, normalisation, augmentation.

The lecture's first step of the meta-algorithm: get the data clean and split before training.

- Synthetic sets (two moons, circles, spirals, XOR, Gaussian blobs, a regression curve) are
  generated here from a seeded numpy ``Generator``, so the same seed gives the same points on
  every platform and every version of scikit-learn.
- scikit-learn's bundled 8x8 ``digits`` (no download) is the real image set of the demo.
- User files: ``.npz`` (``allow_pickle=False``), ``.csv`` (read as text), ``.pt``
  (``torch.load(weights_only=True)``). MNIST (idx files) and CIFAR-10 (binary batches) are parsed
  byte by byte from a local folder; nothing is ever unpickled.
- One seeded permutation splits train/validation/test; normalisation statistics come from the
  training split only, so no information from val/test leaks into training.
- :func:`augment_batch` (random crop with padding, horizontal flip) works on a whole batch on
  whatever device the batch lives on, drawing from a ``torch.Generator`` that a run can checkpoint.

The package's rooms: ``config`` (the ``data:`` section, torch-free), ``dataset`` (Dataset,
load_dataset, normalisation), ``synthetic``, ``image_sets`` (MNIST, CIFAR-10), ``user_files``
(.npz/.npy/.pt/.csv), ``text`` (the character-level ``text`` set and the shipped public-domain
text), ``inputs`` (read_inputs, fit_input_shape, token-id checks), ``augment``, ``images`` and
``image_files`` (image folders: one folder per class, decoded with Pillow) and ``stream``
(training batches through a DataLoader, in the trainer's seeded order). Importing the
package loads no torch: the functions that need it import it when called.
"""

from nncli.data.augment import augment_batch
from nncli.data.config import (
    AUGMENT_KEYS,
    COMMON_KEYS,
    FILE_KEYS,
    FILE_SUFFIXES,
    FOLDER_SETS,
    SETS,
    DataConfig,
    resolve_data_config,
)
from nncli.data.dataset import Dataset, describe_normalization, load_dataset, normalization_stats, normalize
from nncli.data.examples import read_examples
from nncli.data.image_sets import CIFAR10_CLASSES, read_cifar10, read_idx, read_mnist
from nncli.data.inputs import check_dataset_inputs, check_token_ids, fit_input_shape, read_inputs
from nncli.data.synthetic import (
    SYNTHETIC,
    make_blobs,
    make_circles,
    make_moons,
    make_regression,
    make_spirals,
    make_xor,
)
from nncli.data.text import encode_windows, read_text, shipped_corpus
from nncli.data.user_files import X_KEYS, Y_KEYS, read_csv

__all__ = [
    "AUGMENT_KEYS",
    "CIFAR10_CLASSES",
    "COMMON_KEYS",
    "FILE_KEYS",
    "FILE_SUFFIXES",
    "FOLDER_SETS",
    "SETS",
    "SYNTHETIC",
    "X_KEYS",
    "Y_KEYS",
    "DataConfig",
    "Dataset",
    "augment_batch",
    "check_dataset_inputs",
    "check_token_ids",
    "fit_input_shape",
    "load_dataset",
    "make_blobs",
    "make_circles",
    "make_moons",
    "make_regression",
    "make_spirals",
    "make_xor",
    "normalization_stats",
    "describe_normalization",
    "read_examples",
    "normalize",
    "read_cifar10",
    "read_csv",
    "read_idx",
    "read_inputs",
    "read_mnist",
    "read_text",
    "resolve_data_config",
    "encode_windows",
    "shipped_corpus",
]
