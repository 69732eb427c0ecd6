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
