"""Data for a spec with several inputs (``inputs:``): one array per input, under the input's name.

An ``.npz`` or ``.pt`` file holds one array per input, named as the spec names the input, and the
labels ``y`` (a ``y_key`` from the data section, or one of the usual label names). Splits the file
already has are kept as for one input: ``<name>_test`` and ``y_test`` (all of them, or none),
likewise ``_val``; ``<name>_train`` with ``y_train`` is the training pool. Every input is split with
the same seeded permutation, so an example's inputs stay together.

Token inputs (``dtype: int64``) are checked against their ``high`` and never normalised. Each float
input is standardised with its own training statistics (per channel for ``[C, ...]``, per feature
for ``[F]``), kept per input name.

:class:`Inputs` is one batch's (or one split's) inputs: one tensor per input, indexed along the
examples together; :func:`feed` calls a model with them in forward order.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from nncli.errors import InputError

SPLIT_SUFFIXES = ("_test", "_val")


class Inputs:
    """The inputs of a set of examples for a network with several inputs: one tensor per input,
    in the order the network's ``forward`` takes them, all with the same number of examples.

    Indexing (``inputs[idx]``), ``to``, ``cpu``, ``pin_memory`` and ``len`` act on every tensor together,
    so a trainer cuts batches of it as it cuts one tensor.
    """

    __slots__ = ("names", "tensors")

    def __init__(self, names, tensors) -> None:
        self.names, self.tensors = tuple(names), tuple(tensors)

    def __len__(self) -> int:
        return len(self.tensors[0])

    def __getitem__(self, index) -> Inputs:
        return Inputs(self.names, (t[index] for t in self.tensors))

    def __iter__(self):
        return iter(self.tensors)

    def to(self, *args, **kwargs) -> Inputs:
        return Inputs(self.names, (t.to(*args, **kwargs) for t in self.tensors))

    def cpu(self) -> Inputs:
        return Inputs(self.names, (t.cpu() for t in self.tensors))

    def pin_memory(self) -> Inputs:
        return Inputs(self.names, (t.pin_memory() for t in self.tensors))

    @property
    def device(self):
        return self.tensors[0].device

    @property
    def nbytes(self) -> int:
        return sum(t.numel() * t.element_size() for t in self.tensors)

    def describe(self) -> dict:
        """``{name: {"shape": [...], "dtype": "..."}}`` per example, for reports."""
        return {
            n: {"shape": list(t.shape[1:]), "dtype": str(t.dtype).removeprefix("torch.")}
            for n, t in zip(self.names, self.tensors)
        }

    def standardized(self, mean: dict, std: dict) -> Inputs:
        """Each input that has statistics in ``mean``/``std`` (by name) standardised, the others
        (token ids, inputs kept raw) as they are."""
        from nncli.data.dataset import normalize

        return Inputs(
            self.names, (normalize(t, mean[n], std[n]) if n in mean else t for n, t in zip(self.names, self.tensors))
        )

    def cat(self, others) -> Inputs:
        """These examples followed by those of ``others`` (a list of Inputs with the same names)."""
        import torch

        parts = [self, *others]
        return Inputs(self.names, (torch.cat([p.tensors[i] for p in parts]) for i in range(len(self.names))))


def feed(model, x):
    """``model(x)``, or ``model(*inputs)`` for :class:`Inputs`."""
    return model(*x.tensors) if isinstance(x, Inputs) else model(x)


def first_output(out):
    """The first output of a network with several outputs (a tuple), else the output itself."""
    return out[0] if isinstance(out, (tuple, list)) else out


def describe_examples(x) -> dict:
    """What one example is, for reports: ``{"input_shape", "input_dtype"}`` for one input,
    ``{"inputs": {name: {"shape", "dtype"}}}`` for several."""
    if isinstance(x, Inputs):
        return {"inputs": x.describe()}
    return {"input_shape": list(x.shape[1:]), "input_dtype": str(x.dtype).removeprefix("torch.")}


def several_inputs(spec) -> bool:
    """Whether ``spec`` declares more than one input (``inputs:`` with two or more names)."""
    return len(spec.input_specs) > 1


def load_spec_dataset(config, spec):
    """The data of ``config`` as ``spec``'s network takes it, whatever its number of inputs:
    :func:`load_multi_dataset` for several inputs, else
    :func:`~nncli.data.dataset.load_dataset` viewed in the spec's input shape, its inputs checked
    against the spec's dtype (:func:`~nncli.data.inputs.check_dataset_inputs`).

    Raises:
        InputError: the data cannot be read, or does not fit the spec's inputs (exit 2).
    """
    if several_inputs(spec):
        return load_multi_dataset(config, spec)
    from nncli.data.dataset import load_dataset
    from nncli.data.inputs import check_dataset_inputs, fit_input_shape

    ds = load_dataset(config, input_shape=tuple(spec.input), integer_inputs=getattr(spec, "integer_input", False))
    for split in ("train", "val", "test"):  # an image folder's own layout too
        setattr(ds, f"x_{split}", fit_input_shape(getattr(ds, f"x_{split}"), tuple(spec.input)))
    check_dataset_inputs(ds, spec)
    return ds


def load_multi_dataset(config, spec):
    """Load, split and normalise the file of a spec with several inputs (see the module's doc).

    Returns:
        :class:`~nncli.data.Dataset` whose ``x_*`` are :class:`Inputs`; ``mean``/``std`` are
        dicts by input name (float inputs only), or None when nothing is normalised.

    Raises:
        InputError: a source that cannot give several inputs, a missing or ill-shaped array, token
            ids out of range, non-finite values (exit 2).
    """
    from nncli.data.dataset import Dataset, _split, _tensor_y

    arrays, pools = _read_named_arrays(config, spec)
    y, y_test, y_val = (pools[k][1] for k in ("", "_test", "_val"))
    rows = {k: None if pools[k][1] is None else np.arange(len(pools[k][1])) for k in pools}
    (r_train, y_train), (r_val, y_val), (r_test, y_test) = _split(
        config, rows[""], y, rows["_test"], y_test, rows["_val"], y_val
    )
    sources = {
        "train": "",
        "val": "_val" if rows["_val"] is not None else "",
        "test": "_test" if rows["_test"] is not None else "",
    }
    picked = {"train": r_train, "val": r_val, "test": r_test}
    splits = {s: _split_inputs(spec, pools[sources[s]][0], picked[s], Path(config.path), s) for s in picked}
    ds = Dataset(
        name=config.path.name,
        x_train=splits["train"],
        y_train=_tensor_y(y_train),
        x_val=splits["val"],
        y_val=_tensor_y(y_val),
        x_test=splits["test"],
        y_test=_tensor_y(y_test),
    )
    _normalize(ds, spec, config.normalize)
    return ds


def _read_named_arrays(config, spec) -> tuple[dict, dict]:
    """The file's arrays, and per pool (``""`` train pool, ``"_test"``, ``"_val"``) the pair
    ``({input name: array}, labels)`` (``(None, None)`` for a split the file does not have)."""
    from nncli.data.user_files import load_arrays

    names = [i.name for i in spec.input_specs]
    if config.name != "file" or Path(config.path).suffix.lower() not in (".npz", ".pt", ".pth"):
        raise InputError(
            f"{spec.name or 'this spec'} has several inputs ({', '.join(names)}): its data must be an .npz or .pt "
            f"file with one array per input name and the labels; found {_source_name(config)}",
            hint=f"save e.g. np.savez('data.npz', {', '.join(f'{n}=...' for n in names)}, y=...)",
        )
    if config.x_key is not None:
        raise InputError(
            f"data.x_key ({config.x_key!r}) names the one input array of a file; a spec with several inputs "
            f"reads each input's array by its name ({', '.join(names)})",
            param="x_key",
        )
    path = Path(config.path)
    arrays = load_arrays(path)
    pool = "_train" if _label_key(arrays, config, names, path, "_train") is not None else ""
    pools = {"": _pool(arrays, names, pool, _label_key(arrays, config, names, path, pool, required=True), path)}
    for suffix in SPLIT_SUFFIXES:
        key = _label_key(arrays, config, names, path, suffix)
        pools[suffix] = (None, None) if key is None else _pool(arrays, names, suffix, key, path)
    for suffix in (*SPLIT_SUFFIXES, "_train"):  # inputs of a split without its labels would be left out
        partnerless = [n + suffix for n in names if n + suffix in arrays]
        if partnerless and (pools[suffix][1] is None if suffix != "_train" else pool != "_train"):
            raise InputError(
                f"{', '.join(partnerless)} has no partner labels array (y{suffix})",
                file=path,
                hint=f"add the labels of that split as y{suffix}, or leave its inputs out",
            )
    return arrays, pools


def _label_key(arrays: dict, config, names: list, path: Path, suffix: str, required: bool = False) -> str | None:
    """The name of one pool's labels array: ``data.y_key``, else the first usual label name
    (y, labels, ...) that is not also an input's name."""
    from nncli.data.user_files import Y_KEYS

    if config.y_key is not None and config.y_key in names:
        raise InputError(f"data.y_key {config.y_key!r} is the name of an input, not of the labels", param="y_key")
    # an input's own array is never read as the labels (a decoder input called `target`)
    candidates = [config.y_key] if config.y_key is not None else [k for k in Y_KEYS if k not in names]
    found = next((k + suffix for k in candidates if k + suffix in arrays), None)
    if found is None and required:
        raise InputError(
            f"no labels array in {path.name}: expected one named {' / '.join(k + suffix for k in candidates)}; "
            f"found {', '.join(map(str, arrays)) or 'none'}",
            file=path,
        )
    return found


def _pool(arrays: dict, names: list, suffix: str, label_key: str, path: Path) -> tuple[dict, np.ndarray]:
    """One pool's inputs by name and its labels, of equal lengths, the labels finite."""
    from nncli.data.inputs import check_finite
    from nncli.data.user_files import _labels

    y = _labels(_rows(arrays[label_key], label_key, path), path)
    check_finite(y, f"array {label_key!r}", file=path)
    xs = _named(arrays, names, suffix, path)
    for name, a in xs.items():
        if len(a) != len(y):
            raise InputError(f"{len(a)} examples in {name}{suffix} but {len(y)} in {label_key}", file=path)
    return xs, y


def _rows(a, key: str, path: Path) -> np.ndarray:
    """``a`` as an array of one row per example (a single number is refused)."""
    a = np.asarray(a)
    if a.ndim == 0:
        raise InputError(f"array {key!r}: expected one row per example, found a single number", file=path)
    return a


def _named(arrays: dict, names: list, suffix: str, path: Path) -> dict:
    """Each input's array of one pool, by the input's name (missing ones are located errors)."""
    from nncli.data.inputs import check_finite

    missing = [n + suffix for n in names if n + suffix not in arrays]
    if missing:
        raise InputError(
            f"no array {', '.join(map(repr, missing))} in {path.name}: a spec with several inputs reads "
            f"one array per input name; found {', '.join(map(str, arrays)) or 'none'}",
            file=path,
        )
    out = {}
    for n in names:
        a = _rows(arrays[n + suffix], n + suffix, path)
        if a.dtype.kind not in "biuf":
            raise InputError(f"array {n + suffix!r}: expected numbers, found dtype {a.dtype}", file=path)
        check_finite(a, f"array {n + suffix!r}", file=path)  # rows as the file numbers them
        out[n] = a
    return out


def _source_name(config) -> str:
    return str(config.path.name) if config.path is not None else f"the built-in set {config.name!r}"


def _split_inputs(spec, arrays: dict, rows, path: Path, split: str) -> Inputs:
    """One split's tensors, one per input: shaped as the spec's input, token ids checked."""
    import torch

    from nncli.data.inputs import check_token_ids, fit_input_shape

    tensors = []
    for inp in spec.input_specs:
        a = arrays[inp.name][rows] if len(rows) else arrays[inp.name][:0]
        what = f"data {path.name}, input {inp.name!r} ({split})"
        if inp.dtype.startswith("int"):
            t = check_token_ids(torch.from_numpy(np.ascontiguousarray(a)), inp.high, what)
        else:
            t = torch.from_numpy(np.ascontiguousarray(a, dtype=np.float32))
        if t.dim() == 1:
            t = t[:, None]
        tensors.append(fit_input_shape(t, tuple(inp.shape), what=what))
    return Inputs([i.name for i in spec.input_specs], tensors)


def _normalize(ds, spec, enabled: bool) -> None:
    """Standardise each float input with its own training statistics (kept by input name)."""
    from nncli.data.dataset import describe_normalization, normalization_stats

    ds.normalization = {"by": "none"}
    floats = [i for i, inp in enumerate(spec.input_specs) if not inp.dtype.startswith("int")]
    if not enabled or not floats or not len(ds.x_train):
        return
    names = ds.x_train.names
    ds.mean, ds.std = {}, {}
    for i in floats:
        ds.mean[names[i]], ds.std[names[i]] = normalization_stats(ds.x_train.tensors[i])
    for split in ("train", "val", "test"):
        setattr(ds, f"x_{split}", getattr(ds, f"x_{split}").standardized(ds.mean, ds.std))
    ds.normalization = {
        "by": "input",
        "inputs": {names[i]: describe_normalization(tuple(ds.x_train.tensors[i].shape[1:])) for i in floats},
    }


def read_multi_inputs(path: Path, spec, command: str = "predict") -> Inputs:
    """Inputs for predict (or ``command``) from an ``.npz``/``.pt`` holding one array per input
    name (labels, if any, are ignored); shaped and checked as training reads them."""
    from nncli.data.user_files import load_arrays

    path = Path(path)
    if not path.is_file():
        raise InputError(f"no such file: {path}", file=path)
    if path.suffix.lower() not in (".npz", ".pt", ".pth"):
        names = ", ".join(i.name for i in spec.input_specs)
        raise InputError(
            f"{spec.name or 'this spec'} has several inputs ({names}): {command} reads an .npz or .pt file with one array "
            f"per input name, found {path.name}",
            file=path,
        )
    arrays = _named(load_arrays(path), [i.name for i in spec.input_specs], "", path)
    lengths = {n: len(a) for n, a in arrays.items()}
    if len(set(lengths.values())) > 1:
        raise InputError(
            "the inputs hold different numbers of examples: " + ", ".join(f"{n} {k}" for n, k in lengths.items()),
            file=path,
        )
    return _split_inputs(spec, arrays, np.arange(next(iter(lengths.values()))), path, command)
