"""The spec's ``data:`` and ``train:`` sections validated exactly as ``nncli train`` validates
them, for ``nncli check``: a spec that passes ``check`` must not then fail ``train`` on a
misspelt key, ``lr: [3, 3]`` or ``epochs: "3"``. Same functions, same located errors; no data is
loaded and no torch is imported.
"""

from __future__ import annotations

from pathlib import Path


def validate_sections(spec) -> None:
    """Resolve ``spec.data`` and ``spec.train`` as :func:`nncli.train.prepare.prepare` does.

    Raises:
        SpecError / InputError: located at the key in the spec file (exit 2).
    """
    from nncli.data.config import resolve_data_config
    from nncli.train.config import resolve_train_config, section_fail

    base_dir = Path(spec.path).resolve().parent if spec.path is not None else Path.cwd()
    if spec.data is not None:
        resolve_data_config(spec.data, {}, fail=section_fail(spec, "data"), base_dir=base_dir)
    if spec.train is not None:
        resolve_train_config(spec.train, {}, fail=section_fail(spec, "train"))


# Data `check` loads to verify it: local files and folders up to this size, and every built-in
# set but the folder ones (MNIST, CIFAR-10), which are large enough to make `check` slow.
CHECK_DATA_MAX_BYTES = 64 * 2**20


def check_data(spec, output_shape: tuple) -> dict:
    """Load the spec's data as ``nncli train`` would and check it against the network: the target
    column exists, the inputs fit the spec's input, the labels fit the loss and the outputs.

    Returns:
        ``{"checked": True, "sizes", "input_shape"}``, or ``{"checked": False, "reason"}`` when the
        data was not looked at (no data section, a folder set, or a file too large to load here).

    Raises:
        InputError: the data does not fit (exit 2), located at the data section where it can be.
    """
    from nncli.data.config import resolve_data_config
    from nncli.data.multi import describe_examples, load_spec_dataset
    from nncli.errors import InputError
    from nncli.train.config import resolve_train_config, section_fail
    from nncli.train.task import prepare_targets

    if spec.data is None:
        return {"checked": False, "reason": "the spec has no data section"}
    base_dir = Path(spec.path).resolve().parent if spec.path is not None else Path.cwd()
    config = resolve_data_config(spec.data, {}, fail=section_fail(spec, "data"), base_dir=base_dir)
    reason = _too_large(config)
    if reason:
        return {"checked": False, "reason": reason}
    ds = load_spec_dataset(config, spec)
    loss = resolve_train_config(spec.train or {}, {}, fail=section_fail(spec, "train")).loss
    prepare_targets(
        ds, loss, tuple(output_shape), lambda message, hint=None: InputError(f"data {ds.name}: {message}", hint=hint)
    )
    shapes = describe_examples(ds.x_train)
    return {"checked": True, "sizes": ds.sizes(), **{k: v for k, v in shapes.items() if k != "input_dtype"}}


def _too_large(config) -> str | None:
    """Why the data is not loaded by ``check``, or None."""
    if config.name in ("mnist", "cifar10"):
        return f"{config.name} is read from a folder of its own; `nncli train --dry-run` loads it"
    if config.path is None:
        return None
    path = config.path
    size = path.stat().st_size if path.is_file() else sum(p.stat().st_size for p in path.rglob("*") if p.is_file())
    if size > CHECK_DATA_MAX_BYTES:
        return f"{path} holds {size / 2**20:.0f} MiB, more than check loads; `nncli train --dry-run` loads it"
    return None
