"""safetensors export: the weights, with the spec text in the file's metadata, and
:func:`load_safetensors`, which rebuilds the network from that file alone."""

from __future__ import annotations

import json
from pathlib import Path

from nncli.errors import InputError
from nncli.export.source import file_metadata

# The metadata's "nncli.format". Version 2 holds a TrainedNetwork's tensors (``normalize.*`` and
# ``network.*``); version 1 held the network's alone, its normalisation in the metadata.
FORMAT = "nncli-safetensors/2"
FORMAT_V1 = "nncli-safetensors/1"


def _require():
    try:
        import safetensors.torch  # noqa: F401
    except ImportError:
        raise InputError("safetensors files need the safetensors package", hint="pip install 'nncli[export]'") from None


def export_safetensors(source, out: Path) -> dict:
    """Write the weights (every parameter and buffer, the input normalisation's included) and the
    spec; read back and compare.

    Returns:
        ``{"method", "check"}``: the check reads the file, compares every tensor bit for bit and
        rebuilds the network from the file alone (:func:`load_safetensors`).
    """
    _require()
    import torch
    from safetensors.torch import load_file, save

    state = {k: v.detach().cpu().contiguous().clone() for k, v in source.model.state_dict().items()}
    meta = dict(file_metadata(source), **{"nncli.format": FORMAT})
    from nncli.files import write_atomic

    write_atomic(out, save(state, metadata=meta), durable=True)
    back = load_file(str(out))
    same = set(back) == set(state) and all(
        back[k].dtype == v.dtype and back[k].shape == v.shape and torch.equal(back[k], v) for k, v in state.items()
    )
    rebuilt = load_safetensors(out, allow_custom=True, spec_dir=source.spec_dir)  # just built here: trusted
    rebuilt_state = rebuilt.state_dict()
    rebuilt_same = set(rebuilt_state) == set(state) and all(torch.equal(rebuilt_state[k], v) for k, v in state.items())
    check = {
        "tensors": len(state),
        "bit_exact": bool(same),
        "rebuilt": bool(rebuilt_same),
        "passed": bool(same and rebuilt_same),
        "runtime": "safetensors.torch.load_file + nncli.export.load_safetensors",
    }
    return {"method": "safetensors (weights) + spec text in the metadata", "check": check}


def read_metadata(path) -> dict:
    """The string metadata of a safetensors file."""
    _require()
    from safetensors import safe_open

    try:
        with safe_open(str(path), framework="pt") as handle:
            return dict(handle.metadata() or {})
    except Exception as exc:
        raise InputError(f"cannot read {path} as safetensors: {str(exc).splitlines()[0][:200]}", file=path) from None


def load_safetensors(path, device: str = "cpu", *, allow_custom: bool = False, spec_dir=None):
    """Rebuild the model that :func:`export_safetensors` wrote, from that file alone.

    The spec text comes from the metadata; the weights from the tensors. A spec with ``Custom``
    layers is refused unless ``allow_custom``: a Custom layer imports and runs Python code, and a
    weights file should never run code by being loaded. With it, the layer's Python file is looked
    up in ``spec_dir`` (default: the folder holding the file): never where the file's own
    metadata says, since the file may come from anyone.

    Returns:
        :class:`~nncli.modules.TrainedNetwork` in eval mode: it takes raw inputs (a run's input
        normalisation is its first module), with ``.classes`` and ``nncli_meta`` (the metadata:
        spec text, normalisation, class names) attached. A file in the first format (the
        network's tensors alone, the normalisation in the metadata) loads the same way.

    Raises:
        InputError: not a file nncli wrote, damaged metadata, Custom layers without
            ``allow_custom``, or weights that do not fit its spec (exit 2).

    Example:
        >>> model = load_safetensors("digits.safetensors")
        >>> model(torch.zeros(1, 1, 8, 8)).shape
        torch.Size([1, 10])
    """
    from safetensors.torch import load_file

    from nncli.build import build_model
    from nncli.modules.preprocess import statistics_as_lists, trained_network

    path = Path(path)
    if not path.is_file():
        raise InputError(f"no such file: {path}")
    meta = read_metadata(path)
    if meta.get("nncli.format") not in (FORMAT, FORMAT_V1) or "nncli.spec" not in meta:
        raise InputError(
            f"{path} was not written by `nncli export --format safetensors`: no nncli spec in its metadata", file=path
        )
    spec = _metadata_spec(path, meta, allow_custom, spec_dir)
    built = build_model(spec, device=device, seed=0, transfer_weights=False)
    state, normalization = _weights_and_statistics(path, meta, load_file(str(path), device=str(device)))
    classes = _metadata_json(path, meta, "nncli.classes")
    try:
        built.model.load_state_dict(state)
    except RuntimeError as exc:
        raise InputError(
            f"{path}: the weights do not fit the spec in its metadata: {str(exc).splitlines()[0][:300]}", file=path
        ) from None
    names = [i.name for i in spec.input_specs]
    model = trained_network(built.model, normalization, classes, tuple(built.input_shape), names).eval()
    if normalization:
        normalization = statistics_as_lists(normalization)
    model.nncli_meta = {"spec": meta["nncli.spec"], "normalization": normalization or None, "classes": classes}
    return model


def torch_tensor(value):
    import torch

    return torch.as_tensor(value, dtype=torch.float32)


def _metadata_json(path: Path, meta: dict, key: str):
    """A JSON value of the metadata, or None; damaged JSON is the file's fault (exit 2)."""
    if key not in meta:
        return None
    try:
        return json.loads(meta[key])
    except (json.JSONDecodeError, RecursionError) as exc:
        raise InputError(f"{path}: its metadata {key!r} is not valid JSON ({exc})", file=path) from None


def _metadata_spec(path: Path, meta: dict, allow_custom: bool, spec_dir):
    """The spec of the file's metadata, parsed; Custom layers only with ``allow_custom``."""
    from nncli.spec import parse_spec

    base = Path(spec_dir) if spec_dir else path.resolve().parent
    spec = parse_spec(meta["nncli.spec"], file=f"{path} (metadata nncli.spec)", base_dir=base)
    custom = [layer for layer in spec.walk() if layer.type == "Custom"]
    if custom and not allow_custom:
        raise InputError(
            f"{path}: its spec has Custom layers ({getattr(custom[0], 'target', 'Custom')}), which import "
            "and run Python code; refused by default",
            file=path,
            hint="if you trust the file: nncli.export.load_safetensors(path, allow_custom=True, spec_dir=FOLDER) "
            "with the folder that holds the layers' Python files",
        )
    return spec


def _weights_and_statistics(path, meta: dict, state: dict) -> tuple[dict, dict | None]:
    """The network's tensors and the input statistics: a format-2 file holds both as tensors
    (``network.*``, ``normalize.*``); a format-1 file the weights alone, statistics in its metadata."""
    if meta["nncli.format"] == FORMAT:
        network = {k[len("network.") :]: v for k, v in state.items() if k.startswith("network.")}
        return network, _stored_normalization(state)
    normalization = _metadata_json(path, meta, "nncli.normalization")
    if normalization is not None and normalization.get("mean") is not None:
        normalization = {k: torch_tensor(normalization[k]) for k in ("mean", "std")}
    return state, normalization


def _stored_normalization(state: dict) -> dict:
    """The ``normalize.*`` tensors of a format-2 file: ``{"mean", "std"}``, or for several inputs
    (``normalize.inputs.<name>.mean``) dicts by input name."""
    found = {k[len("normalize.") :]: v for k, v in state.items() if k.startswith("normalize.")}
    if not any(k.startswith("inputs.") for k in found):
        return found
    out: dict = {"mean": {}, "std": {}}
    for key, value in found.items():
        name, stat = key[len("inputs.") :].rsplit(".", 1)
        out[stat][name] = value
    return out
