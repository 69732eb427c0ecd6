"""nncli.data: generators checked against their closed-form geometry, file readers against bytes
written here by hand, splits and normalisation against numpy recomputations."""

from __future__ import annotations

import gzip
import struct

import numpy as np
import pytest
import torch

from nncli.data import (
    augment_batch,
    fit_input_shape,
    load_dataset,
    make_blobs,
    make_circles,
    make_moons,
    make_regression,
    make_spirals,
    make_xor,
    normalization_stats,
    read_idx,
    read_inputs,
    resolve_data_config,
)
from nncli.errors import InputError


def rng(seed=0):
    return np.random.default_rng(seed)


# -- synthetic sets: closed-form geometry with the noise switched off ---------------------------
def test_moons_lie_on_their_half_circles():
    x, y = make_moons(rng(), n=301, noise=0.0)
    assert x.shape == (301, 2) and sorted(np.bincount(y)) == [150, 151]
    outer, inner = x[y == 0], x[y == 1]
    np.testing.assert_allclose(np.hypot(*outer.T), 1.0, atol=1e-6)
    assert (outer[:, 1] >= -1e-6).all()  # upper half circle
    np.testing.assert_allclose(np.hypot(inner[:, 0] - 1, inner[:, 1] - 0.5), 1.0, atol=1e-6)
    assert (inner[:, 1] <= 0.5 + 1e-6).all()  # lower half circle centred at (1, 0.5)


def test_circles_radii_and_xor_labels():
    x, y = make_circles(rng(1), n=200, noise=0.0, factor=0.3)
    radius = np.hypot(*x.T)
    np.testing.assert_allclose(radius[y == 0], 1.0, atol=1e-6)
    np.testing.assert_allclose(radius[y == 1], 0.3, atol=1e-6)
    x, y = make_xor(rng(2), n=500, noise=0.0)
    expected = np.array([int((a > 0) != (b > 0)) for a, b in x])
    np.testing.assert_array_equal(y, expected)
    assert 200 < y.sum() < 300


def test_spirals_arms_follow_the_archimedean_law():
    x, y = make_spirals(rng(3), n=400, noise=0.0, classes=3, turns=1.0)
    assert np.bincount(y).tolist() == [134, 133, 133]
    r = np.hypot(*x.T)
    angle = np.arctan2(x[:, 1], x[:, 0])
    # angle = 2*pi*(turns*r + c/classes) modulo 2*pi
    want = 2 * np.pi * (r + y / 3)
    diff = np.angle(np.exp(1j * (angle - want)))
    np.testing.assert_allclose(diff, 0, atol=1e-5)


def test_blobs_cluster_around_distinct_centres():
    x, y = make_blobs(rng(4), n=3000, classes=4, features=5, spread=0.5)
    assert x.shape == (3000, 5)
    means = np.stack([x[y == c].mean(0) for c in range(4)])
    spreads = np.stack([x[y == c].std(0) for c in range(4)])
    np.testing.assert_allclose(spreads, 0.5, atol=0.06)
    dists = np.linalg.norm(means[:, None] - means[None], axis=-1)
    assert dists[~np.eye(4, dtype=bool)].min() > 1.0


def test_regression_targets_are_the_stated_function():
    x, y = make_regression(rng(5), n=100, noise=0.0, features=3)
    assert y.shape == (100, 1) and y.dtype == np.float32
    np.testing.assert_allclose(y[:, 0], np.sin(x).sum(1) / np.sqrt(3), atol=1e-5)


# -- digits, splits, normalisation --------------------------------------------------------------
def test_digits_split_is_a_seeded_partition_of_sklearns_digits():
    from sklearn.datasets import load_digits

    ref = load_digits()
    ds = load_dataset(resolve_data_config({"name": "digits", "normalize": False}))
    sizes = ds.sizes()
    assert sum(sizes.values()) == 1797 and sizes["test"] == round(1797 * 0.2)
    assert ds.input_shape == (1, 8, 8) and ds.num_classes == 10
    # every example appears exactly once across the splits, with its own label
    rows = {}
    for split in ("train", "val", "test"):
        x, y = ds.split(split)
        for img, label in zip((x * 16).round().to(torch.int64).reshape(len(x), -1).tolist(), y.tolist()):
            rows.setdefault(tuple(img), []).append(label)
    ref_rows = {}
    for img, label in zip(ref.data.astype(int).tolist(), ref.target.tolist()):
        ref_rows.setdefault(tuple(img), []).append(label)
    assert {k: sorted(v) for k, v in rows.items()} == {k: sorted(v) for k, v in ref_rows.items()}
    again = load_dataset(resolve_data_config({"name": "digits", "normalize": False}))
    assert torch.equal(again.x_test, ds.x_test)
    other = load_dataset(resolve_data_config({"name": "digits", "normalize": False, "seed": 1}))
    assert not torch.equal(other.x_test, ds.x_test)


def test_normalisation_uses_training_statistics_only():
    raw = load_dataset(resolve_data_config({"name": "digits", "normalize": False}))
    norm = load_dataset(resolve_data_config({"name": "digits"}))
    train = raw.x_train.numpy().astype(np.float64)
    mean, std = train.mean(), train.std()  # one channel: statistics over all pixels
    np.testing.assert_allclose(norm.mean.numpy().ravel(), [mean], rtol=1e-6)
    np.testing.assert_allclose(norm.std.numpy().ravel(), [std], rtol=1e-6)
    np.testing.assert_allclose(norm.x_test.numpy(), (raw.x_test.numpy() - mean) / std, atol=1e-5)
    # the test split's own statistics differ, proving they were not used
    assert abs(raw.x_test.numpy().mean() - mean) > 1e-4


def test_per_feature_and_per_channel_statistics():
    x = torch.tensor([[1.0, 10.0, 5.0], [3.0, 30.0, 5.0]])
    mean, std = normalization_stats(x)
    assert mean.tolist() == [2.0, 20.0, 5.0]
    assert std.tolist() == [1.0, 10.0, 1.0]  # a constant feature keeps std 1
    images = torch.arange(2 * 3 * 2 * 2, dtype=torch.float32).reshape(2, 3, 2, 2)
    mean, std = normalization_stats(images)
    assert mean.shape == (3, 1, 1)
    ref = images.permute(1, 0, 2, 3).reshape(3, -1)
    torch.testing.assert_close(mean.ravel(), ref.mean(1))
    torch.testing.assert_close(std.ravel(), ref.std(1, unbiased=False))


def test_limit_and_fractions():
    ds = load_dataset(resolve_data_config({"name": "blobs", "n": 500, "val": 0.2, "test": 0.1, "limit": 100}))
    assert ds.sizes() == {"train": 70, "val": 20, "test": 10}
    assert ds.num_classes == 3


# -- shape fitting ------------------------------------------------------------------------------
def test_fit_input_shape_flattens_but_never_scrambles():
    x = torch.arange(2 * 64, dtype=torch.float32).reshape(2, 1, 8, 8)
    assert fit_input_shape(x, (64,)).shape == (2, 64)
    assert fit_input_shape(x, (8, 8)).shape == (2, 8, 8)
    assert fit_input_shape(x.reshape(2, 64), (1, 8, 8)).shape == (2, 1, 8, 8)
    with pytest.raises(InputError, match=r"input shape does not match the spec.*\[2, 32\].*\[1, 8, 8\]"):
        fit_input_shape(x, (2, 32))
    with pytest.raises(InputError, match="input shape does not match"):
        fit_input_shape(x, (10,))


# -- augmentation ---------------------------------------------------------------------------------
def test_random_crop_is_a_window_of_the_zero_padded_image():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(32, 2, 5, 6)
    out = augment_batch(x, crop=2, generator=g)
    assert out.shape == x.shape
    padded = np.pad(x.numpy(), ((0, 0), (0, 0), (2, 2), (2, 2)))
    offsets = set()
    for i in range(len(x)):
        hits = [
            (dy, dx)
            for dy in range(5)
            for dx in range(5)
            if np.array_equal(padded[i, :, dy : dy + 5, dx : dx + 6], out[i].numpy())
        ]
        assert hits, f"example {i} is not a padded window"
        offsets.add(hits[0])
    assert len(offsets) > 5  # offsets differ per example
    again = augment_batch(x, crop=2, generator=torch.Generator().manual_seed(0))
    assert torch.equal(again, out)


def test_flip_mirrors_about_half_the_examples():
    x = torch.randn(400, 1, 3, 4)
    out = augment_batch(x, flip=True, generator=torch.Generator().manual_seed(1))
    same = (out == x).flatten(1).all(1)
    mirrored = (out == x.flip(-1)).flatten(1).all(1)
    assert bool((same | mirrored).all())
    assert 150 < int(mirrored.sum()) < 250
    with pytest.raises(InputError, match="image batches"):
        augment_batch(torch.zeros(4, 3), flip=True)


# -- MNIST and CIFAR-10 from hand-written binary files ------------------------------------------
def _idx(array: np.ndarray) -> bytes:
    return (
        bytes([0, 0, 0x08, array.ndim])
        + struct.pack(f">{array.ndim}I", *array.shape)
        + array.astype(np.uint8).tobytes()
    )


def test_mnist_idx_files(tmp_path):
    gen = rng(6)
    train = gen.integers(0, 256, (7, 28, 28))
    test = gen.integers(0, 256, (3, 28, 28))
    (tmp_path / "train-images-idx3-ubyte").write_bytes(_idx(train))
    (tmp_path / "train-labels-idx1-ubyte").write_bytes(_idx(np.array([0, 1, 2, 3, 4, 5, 9])))
    (tmp_path / "t10k-images-idx3-ubyte.gz").write_bytes(gzip.compress(_idx(test)))
    (tmp_path / "t10k-labels-idx1-ubyte.gz").write_bytes(gzip.compress(_idx(np.array([7, 8, 9]))))
    ds = load_dataset(resolve_data_config({"name": "mnist", "path": str(tmp_path), "normalize": False, "val": 0.3}))
    assert ds.sizes() == {"train": 5, "val": 2, "test": 3}  # the shipped test split is kept
    np.testing.assert_allclose(ds.x_test.numpy()[:, 0] * 255, test, atol=1e-4)
    assert ds.y_test.tolist() == [7, 8, 9]
    train_rows = {tuple((a * 255).round().astype(int).ravel()) for a in ds.x_train.numpy()}
    assert train_rows <= {tuple(a.ravel()) for a in train}
    (tmp_path / "train-labels-idx1-ubyte").write_bytes(_idx(np.array([0, 1, 2]))[:-1])
    with pytest.raises(InputError, match="corrupt idx file"):
        load_dataset(resolve_data_config({"name": "mnist", "path": str(tmp_path)}))
    bad = tmp_path / "junk"
    bad.write_bytes(b"PK\x03\x04junk")
    with pytest.raises(InputError, match="not an idx file"):
        read_idx(bad)


def test_cifar10_binary_batches(tmp_path):
    gen = rng(7)
    records = {}
    for name in [f"data_batch_{i}.bin" for i in range(1, 6)] + ["test_batch.bin"]:
        labels = gen.integers(0, 10, 2)
        pixels = gen.integers(0, 256, (2, 3072))
        records[name] = (labels, pixels)
        (tmp_path / name).write_bytes(np.concatenate([labels[:, None], pixels], 1).astype(np.uint8).tobytes())
    ds = load_dataset(resolve_data_config({"name": "cifar10", "path": str(tmp_path), "normalize": False, "val": 0.0}))
    assert ds.sizes() == {"train": 10, "val": 0, "test": 2} and ds.classes[0] == "airplane"
    labels, pixels = records["test_batch.bin"]
    assert ds.y_test.tolist() == labels.tolist()
    # byte 1 + c*1024 + h*32 + w of a record is channel c, row h, column w
    x = ds.x_test.numpy() * 255
    for c, h, w in [(0, 0, 0), (1, 5, 7), (2, 31, 31)]:
        assert round(float(x[1, c, h, w])) == pixels[1, c * 1024 + h * 32 + w]
    (tmp_path / "test_batch.bin").write_bytes(b"\x01" * 100)
    with pytest.raises(InputError, match="corrupt CIFAR-10 batch"):
        load_dataset(resolve_data_config({"name": "cifar10", "path": str(tmp_path)}))
    (tmp_path / "test_batch.bin").unlink()
    with pytest.raises(InputError, match="missing test_batch.bin"):
        load_dataset(resolve_data_config({"name": "cifar10", "path": str(tmp_path)}))


# -- user files -------------------------------------------------------------------------------------
def test_npz_pool_and_explicit_splits(tmp_path):
    x = rng(8).normal(size=(50, 3)).astype(np.float32)
    y = (x[:, 0] > 0).astype(np.int64)
    np.savez(tmp_path / "pool.npz", x=x, y=y)
    ds = load_dataset(resolve_data_config({"path": str(tmp_path / "pool.npz"), "normalize": False}))
    assert ds.sizes() == {"train": 35, "val": 5, "test": 10} and ds.num_classes == 2
    np.savez(tmp_path / "split.npz", x_train=x[:40], y_train=y[:40], x_test=x[40:], y_test=y[40:])
    ds = load_dataset(resolve_data_config({"path": str(tmp_path / "split.npz"), "normalize": False, "val": 0.25}))
    assert ds.sizes() == {"train": 30, "val": 10, "test": 10}
    np.testing.assert_array_equal(ds.x_test.numpy(), x[40:])
    np.savez(tmp_path / "nolabels.npz", inputs=x)
    with pytest.raises(InputError, match="no target array"):
        load_dataset(resolve_data_config({"path": str(tmp_path / "nolabels.npz")}))
    np.savez(tmp_path / "obj.npz", x=np.array([{"a": 1}] * 3, dtype=object), y=np.zeros(3))
    with pytest.raises(InputError, match="no unpickling"):
        load_dataset(resolve_data_config({"path": str(tmp_path / "obj.npz")}))
    np.savez(tmp_path / "short.npz", x=x, y=y[:-1])
    with pytest.raises(InputError, match="50 inputs but 49 targets"):
        load_dataset(resolve_data_config({"path": str(tmp_path / "short.npz")}))


def test_csv_with_header_and_string_classes(tmp_path):
    path = tmp_path / "iris.csv"
    path.write_text("a,b,species\n" + "1,2,setosa\n3,4,virginica\n5,6,setosa\n7,8,versicolor\n" * 5)
    ds = load_dataset(resolve_data_config({"path": str(path), "normalize": False, "val": 0, "test": 0}))
    assert ds.classes == ["setosa", "versicolor", "virginica"]
    assert ds.sizes()["train"] == 20 and ds.input_shape == (2,)
    pairs = {tuple(r) + (ds.classes[c],) for r, c in zip(ds.x_train.tolist(), ds.y_train.tolist())}
    assert pairs == {(1.0, 2.0, "setosa"), (3.0, 4.0, "virginica"), (5.0, 6.0, "setosa"), (7.0, 8.0, "versicolor")}
    reg = tmp_path / "reg.csv"
    reg.write_text("0.5,1.25\n1.5,2.5\n2.5,3.75\n")
    ds = load_dataset(resolve_data_config({"path": str(reg), "val": 0, "test": 0, "normalize": False}))
    assert not ds.is_classification and ds.y_train.shape == (3, 1)
    bad = tmp_path / "bad.csv"
    bad.write_text("x1,x2,label\n1,2,0\n3,oops,1\n")
    with pytest.raises(InputError, match="expected a number in column 2") as info:
        load_dataset(resolve_data_config({"path": str(bad)}))
    assert info.value.line == 3


def test_pt_files_load_with_weights_only(tmp_path):
    x = torch.randn(20, 4)
    y = torch.arange(20) % 3
    torch.save({"x": x, "y": y}, tmp_path / "d.pt")
    torch.save((x, y), tmp_path / "t.pt")
    for name in ("d.pt", "t.pt"):
        ds = load_dataset(resolve_data_config({"path": str(tmp_path / name), "normalize": False, "val": 0, "test": 0}))
        got = sorted(zip(map(tuple, ds.x_train.tolist()), ds.y_train.tolist()))
        assert got == sorted(zip(map(tuple, x.tolist()), y.tolist()))
    torch.save({"x": x, "y": y, "obj": _Opaque()}, tmp_path / "evil.pt")
    with pytest.raises(InputError, match="weights_only=True"):
        load_dataset(resolve_data_config({"path": str(tmp_path / "evil.pt")}))


class _Opaque:
    pass


def test_read_inputs_for_predict(tmp_path):
    np.savez(tmp_path / "one.npz", anything=np.ones((3, 2)))
    assert read_inputs(tmp_path / "one.npz").shape == (3, 2)
    (tmp_path / "p.csv").write_text("f1,f2\n1,2\n3,4\n")
    assert read_inputs(tmp_path / "p.csv").tolist() == [[1.0, 2.0], [3.0, 4.0]]
    with pytest.raises(InputError, match="no such input file"):
        read_inputs(tmp_path / "missing.csv")


def test_read_inputs_header_only_csv_has_no_data_rows(tmp_path):
    # Like read_csv (training data): a header and nothing under it is an error, not an empty tensor.
    (tmp_path / "h.csv").write_text("a,b\n")
    with pytest.raises(InputError, match="no data rows") as info:
        read_inputs(tmp_path / "h.csv")
    assert info.value.exit_code == 2
    (tmp_path / "t.csv").write_text("a,b,label\n")
    with pytest.raises(InputError, match="no data rows"):
        load_dataset(resolve_data_config({"path": str(tmp_path / "t.csv")}))


def test_read_inputs_pt_and_npy_layouts_and_refusals(tmp_path):
    x = torch.arange(12, dtype=torch.float32).reshape(6, 2)
    expected = [[float(2 * i), float(2 * i + 1)] for i in range(6)]  # written out by hand
    torch.save({"x": x, "y": torch.zeros(6)}, tmp_path / "d.pt")
    torch.save((x, torch.zeros(6)), tmp_path / "pair.pt")
    torch.save(x, tmp_path / "bare.pt")
    torch.save({"x": x.to(torch.bfloat16)}, tmp_path / "bf16.pt")  # numpy has no bfloat16
    np.save(tmp_path / "a.npy", x.numpy())
    for name in ("d.pt", "pair.pt", "bare.pt", "bf16.pt", "a.npy"):
        got = read_inputs(tmp_path / name)
        assert got.dtype == torch.float32 and got.tolist() == expected, name
    torch.save({"x": x, "obj": _Opaque()}, tmp_path / "evil.pt")
    with pytest.raises(InputError, match="weights_only=True"):
        read_inputs(tmp_path / "evil.pt")
    np.savez(tmp_path / "objects.npz", x=np.array([{"a": 1}, None], dtype=object))
    with pytest.raises(InputError, match="object arrays are refused"):
        read_inputs(tmp_path / "objects.npz")
    (tmp_path / "junk.npz").write_bytes(b"not a zip file")
    with pytest.raises(InputError, match="cannot read junk.npz"):
        read_inputs(tmp_path / "junk.npz")


# -- the data: section --------------------------------------------------------------------------------
def test_config_defaults_and_override_replacing_the_source():
    cfg = resolve_data_config({"name": "moons", "n": 300, "noise": 0.3, "val": 0.2})
    assert cfg.params == {"n": 300, "noise": 0.3} and cfg.val == 0.2
    cfg = resolve_data_config({"name": "moons", "n": 300, "noise": 0.3, "val": 0.2}, {"name": "digits"})
    assert cfg.name == "digits" and cfg.params == {} and cfg.val == 0.2  # generic keys survive
    cfg = resolve_data_config({"name": "moons", "n": 300}, {"noise": 0.05})
    assert cfg.params == {"n": 300, "noise": 0.05}
    assert resolve_data_config(cfg.to_dict()) == cfg  # run.yaml round trip


@pytest.mark.parametrize(
    "section, message, hint",
    [
        ({"name": "moon"}, "unknown data set 'moon'", "did you mean 'moons'"),
        ({"name": "moons", "nosie": 0.1}, "unknown key 'nosie'", "did you mean 'noise'"),
        ({"name": "digits", "noise": 0.1}, "`noise` does not apply to digits", None),
        ({"name": "moons", "n": -5}, "expected an integer >= 1, found an integer (-5)", None),
        ({"name": "moons", "noise": float("inf")}, "expected a number >= 0, found a number (inf)", None),
        ({"name": "moons", "noise": float("nan")}, "expected a number >= 0, found a number (nan)", None),
        ({"name": "blobs", "features": 2.5}, "expected an integer >= 1, found a number (2.5)", None),
        ({"name": "moons", "val": 10**400}, "expected a number >= 0 and <= 0.9, found an integer", None),
        ({"name": "moons", "val": 0.5, "test": 0.5}, "expected val + test < 1", None),
        ({"name": "mnist"}, "read from a local folder", "never downloads"),
        ({"path": "no/such/file.npz"}, "no such data file", None),
        ({"path": "data.txt"}, "expected a .npz, .csv or .pt file", None),
        ({"name": "moons", "augment": {"crop": 2, "flip": "yes"}}, "expected true or false", None),
        ({}, "no data", None),
    ],
)
def test_config_errors_are_located_and_helpful(section, message, hint):
    with pytest.raises(InputError) as info:
        resolve_data_config(section)
    assert message in info.value.message
    if hint:
        assert hint in (info.value.hint or "")
    assert info.value.spec_path.startswith("data")


def test_config_errors_go_through_the_spec_locator():
    from nncli.spec import parse_spec

    spec = parse_spec(
        "input: [2]\nlayers: [Linear: {out_features: 2}]\ndata:\n  name: moons\n  nosie: 0.1\n", file="s.yaml"
    )

    def fail(path, message, hint, from_override):
        return spec.error(("data",) + path, message, hint, key=True)

    from nncli.errors import SpecError

    with pytest.raises(SpecError) as info:
        resolve_data_config(spec.data, fail=fail)
    assert (info.value.file, info.value.line, info.value.spec_path) == ("s.yaml", 5, "data.nosie")


def test_infinite_noise_is_a_located_bad_input():
    # YAML's .inf is a float: it used to pass `noise >= 0` and fail later with a NaN message.
    from nncli.errors import SpecError
    from nncli.spec import parse_spec

    spec = parse_spec(
        "input: [2]\nlayers: [Linear: {out_features: 2}]\ndata:\n  name: moons\n  noise: .inf\n", file="s.yaml"
    )
    assert spec.data["noise"] == float("inf")

    def fail(path, message, hint, from_override):
        return spec.error(("data",) + path, message, hint)

    with pytest.raises(SpecError, match="expected a number >= 0") as info:
        resolve_data_config(spec.data, fail=fail)
    assert (info.value.line, info.value.spec_path, info.value.exit_code) == (5, "data.noise", 2)
