"""A single number where a file should hold one row per example is a located exit 2, for training
data and for the inputs predict, gradcheck and probe read (it was an internal error)."""

from __future__ import annotations

import numpy as np
import pytest

from nncli.data import read_inputs, resolve_data_config
from nncli.data.dataset import load_dataset
from nncli.errors import InputError


@pytest.mark.parametrize("key", ["x", "y"])
def test_training_file_with_a_single_number(tmp_path, key):
    arrays = {"x": np.zeros((10, 2), np.float32), "y": np.zeros(10, np.int64)}
    arrays[key] = np.float32(3)
    np.savez(tmp_path / "d.npz", **arrays)
    with pytest.raises(InputError, match=f"array '{key}': expected one row per example, found a single number"):
        load_dataset(resolve_data_config({"path": str(tmp_path / "d.npz")}))


def test_input_file_with_a_single_number(tmp_path):
    np.savez(tmp_path / "x.npz", x=np.float32(3))
    with pytest.raises(InputError, match="expected one row per example, found a single number"):
        read_inputs(tmp_path / "x.npz")
