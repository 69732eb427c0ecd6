"""``nncli config``: everything a training run would use, resolved before it starts: the spec after
``--set``, the ``data:`` and ``train:`` sections with every default filled in, and (loading the
data as ``nncli train`` does) the split sizes, the input shape and how inputs are standardised.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from nncli.formatting import jsonable


@dataclass
class ResolvedConfig:
    """The resolved configuration of a training run that has not started."""

    spec: dict  # the spec's YAML document after --set
    data: dict  # the data section as run.yaml would record it
    train: dict  # the train section as run.yaml would record it
    loaded: dict | None = None  # {"sizes", "input_shape", "output_shape", "normalization", "classes"}

    def to_json(self) -> dict:
        return jsonable({"spec": self.spec, "data": self.data, "train": self.train, "loaded": self.loaded})


def resolve_config(spec, overrides: dict | None = None, *, load: bool = True) -> ResolvedConfig:
    """Resolve a spec's sections as ``nncli train`` would, and (``load``) load its data.

    Args:
        spec: a :class:`nncli.spec.Spec` (with any ``--set`` applied) or a spec file.
        overrides: flag values as :func:`nncli.train.run_training` takes them (``{"epochs": 3,
            "data": "moons"}``).
        load: also load the data (split sizes, shapes, normalisation); False resolves only.

    Raises:
        SpecError / InputError: what ``nncli train`` would refuse before training (exit 2).
    """
    import yaml

    from nncli import data as data_mod
    from nncli.data.multi import describe_examples
    from nncli.train.config import resolve_train_config, section_fail, split_overrides
    from nncli.train.prepare import _checked_dataset, _load_spec_arg, _spec_text, resolve_data_source

    spec = _load_spec_arg(spec)
    data_over, train_over = split_overrides(overrides)
    base_dir = Path(spec.path).resolve().parent if spec.path is not None else Path.cwd()
    data_cfg = data_mod.resolve_data_config(
        spec.data, resolve_data_source(data_over), fail=section_fail(spec, "data"), base_dir=base_dir
    )
    cfg = resolve_train_config(spec.train, train_over, fail=section_fail(spec, "train"))
    document = spec.document.data if spec.document is not None else None
    result = ResolvedConfig(document or yaml.safe_load(_spec_text(spec)), data_cfg.to_dict(), cfg.to_dict())
    if load:
        from nncli.build import infer

        output_shape = tuple(infer(spec).output_shape)
        ds = _checked_dataset(spec, data_cfg, cfg, output_shape, 1)
        result.loaded = {
            "sizes": ds.sizes(),
            **describe_examples(ds.x_train),
            "output_shape": list(output_shape),
            "normalization": (ds.normalization or data_mod.describe_normalization(tuple(ds.x_train.shape[1:])))
            if ds.mean is not None
            else {"by": "none"},
            "classes": ds.classes,
        }
    return result
