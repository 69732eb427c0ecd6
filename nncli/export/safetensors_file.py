"""safetensors export: the weights, with the spec text in the file's metadata, and
:func:`load_safetensors`, which rebuilds the network from that file alone."""

from __future__ import annotations

import json
from pathlib import Path

from nncli.errors import InputError

FORMAT = "nncli-safetensors/1"  # the metadata's "nncli.format": what load_safetensors reads


def _require():
    try:
        import safetensors.torch  # noqa: F401
    except ImportError:
        raise InputError("safetensors files need the safetensors package", hint="pip install 'nncli[export]'") from None


def export_safetensors(source, out: Path) -> dict:
    """Write the weights (every parameter and buffer) and the spec; read back and compare.

    Returns:
        ``{"method", "check"}``: the check reads the file, compares every tensor bit for bit and
        rebuilds the network from the file alone (:func:`load_safetensors`).
    """
    _require()
    import torch
    from safetensors.torch import load_file, save

    state = {k: v.detach().cpu().contiguous().clone() for k, v in source.model.state_dict().items()}
    meta = {"nncli.format": FORMAT, "nncli.spec": source.spec_text}
    if source.spec_dir:
        meta["nncli.spec_dir"] = source.spec_dir
    if source.normalization is not None:
        meta["nncli.normalization"] = json.dumps(source.normalization)
    if source.classes:
        meta["nncli.classes"] = json.dumps(source.classes)
    from nncli.files import write_atomic

    write_atomic(out, save(state, metadata=meta), durable=True)
    back = load_file(str(out))
    same = set(back) == set(state) and all(
        back[k].dtype == v.dtype and back[k].shape == v.shape and torch.equal(back[k], v) for k, v in state.items()
    )
    rebuilt = load_safetensors(out, allow_custom=True)  # the spec was just built here: trusted
    rebuilt_same = all(torch.equal(a, b) for a, b in zip(rebuilt.state_dict().values(), state.values(), strict=False))
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


def load_safetensors(path, device: str = "cpu", *, allow_custom: bool = False):
    """Rebuild the network that :func:`export_safetensors` wrote, from that file alone.

    The spec text comes from the metadata; the weights from the tensors. A spec with ``Custom``
    layers is refused unless ``allow_custom``: a Custom layer imports and runs Python code, and a
    weights file should never run code by being loaded. With it, the layer's Python file is looked
    up where the spec was (``nncli.spec_dir``): its code is not in the file.

    Returns:
        ``torch.nn.Sequential`` in eval mode, with ``nncli_meta`` (the metadata: spec text,
        normalisation, class names) attached.

    Raises:
        InputError: not a file nncli wrote, Custom layers without ``allow_custom``, or weights
            that do not fit its spec (exit 2).

    Example:
        >>> model = load_safetensors("digits.safetensors")
        >>> model(torch.zeros(1, 1, 8, 8)).shape
        torch.Size([1, 10])
    """
    from safetensors.torch import load_file

    from nncli.build import build_model
    from nncli.spec import parse_spec

    path = Path(path)
    if not path.is_file():
        raise InputError(f"no such file: {path}")
    meta = read_metadata(path)
    if meta.get("nncli.format") != FORMAT or "nncli.spec" not in meta:
        raise InputError(
            f"{path} was not written by `nncli export --format safetensors`: no nncli spec in its metadata", file=path
        )
    spec_dir = meta.get("nncli.spec_dir")
    base = Path(spec_dir) if spec_dir and Path(spec_dir).is_dir() else path.resolve().parent
    spec = parse_spec(meta["nncli.spec"], file=f"{path} (metadata nncli.spec)", base_dir=base)
    custom = [layer for layer in spec.walk() if layer.type == "Custom"]
    if custom and not allow_custom:
        raise InputError(
            f"{path}: its spec has Custom layers ({getattr(custom[0], 'target', 'Custom')}), which import "
            "and run Python code; refused by default",
            file=path,
            hint="if you trust the file: nncli.export.load_safetensors(path, allow_custom=True)",
        )
    built = build_model(spec, device=device, seed=0, transfer_weights=False)
    state = load_file(str(path), device=str(device))
    try:
        built.model.load_state_dict(state)
    except RuntimeError as exc:
        raise InputError(
            f"{path}: the weights do not fit the spec in its metadata: {str(exc).splitlines()[0][:300]}", file=path
        ) from None
    built.model.eval()
    built.model.nncli_meta = {
        "spec": meta["nncli.spec"],
        "normalization": json.loads(meta["nncli.normalization"]) if "nncli.normalization" in meta else None,
        "classes": json.loads(meta["nncli.classes"]) if "nncli.classes" in meta else None,
    }
    return built.model
