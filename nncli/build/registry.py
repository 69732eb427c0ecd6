"""Which class a layer name means: torch.nn's modules, nncli's own, and Custom targets.

A Custom target is Python code the spec's author wrote: it is imported only here, after the trust
rules (file targets inside the spec's folder tree; none at all under --no-custom) allow it.
"""

from __future__ import annotations

import functools
import importlib
import importlib.util
import inspect
import sys

from torch import nn

from nncli import modules as nm
from nncli.build import checks
from nncli.build.checks import first_line
from nncli.errors import SpecError, did_you_mean
from nncli.modules import Step
from nncli.spec import CustomSpec, LayerSpec, Spec
from nncli.spec.source import Where

# torch.nn classes that are containers or need several inputs: not layers of a Sequential spec.
_NOT_LAYERS = {
    "Module",
    "Sequential",
    "ModuleList",
    "ModuleDict",
    "ParameterList",
    "ParameterDict",
    "Container",
    "MultiheadAttention",
    "Transformer",
    "TransformerDecoder",
    "TransformerDecoderLayer",
    "Bilinear",
}

_NNCLI_CLASSES = {
    "Step": Step,
    "Identity": nn.Identity,
    **{
        name: getattr(nm, name)
        for name in (
            "Permute",
            "Transpose",
            "Reshape",
            "Chunk",
            "Select",
            "Narrow",
            "Mean",
            "StochasticDepth",
            "ClassToken",
            "PositionEmbedding",
            "LayerNorm2d",
            "LayerScale",
            "SelfAttention",
            "RNN",
            "LSTM",
            "GRU",
            "TransformerEncoderLayer",
        )
    },
}


@functools.lru_cache(maxsize=1)  # scanning torch.nn is not free; once per process rather than per build
def layer_classes() -> dict[str, type]:
    """Every layer class a spec may name: torch.nn's modules plus nncli's own (shared: do not change it)."""
    out = {}
    for name in dir(nn):
        obj = getattr(nn, name)
        if (
            inspect.isclass(obj)
            and issubclass(obj, nn.Module)
            and not name.startswith("_")
            and name not in _NOT_LAYERS
            and not name.startswith("Lazy")
        ):
            out[name] = obj
    out.update(_NNCLI_CLASSES)
    return out


def resolve_class(spec: LayerSpec) -> tuple[type, str | None]:
    """The class a layer names (torch.nn, nncli's own, or a Custom target) and the Custom target."""
    if isinstance(spec, CustomSpec):
        return load_custom(spec), spec.target
    classes = layer_classes()
    cls = classes.get(spec.type)
    if cls is None:
        hint = did_you_mean(spec.type, list(classes) + ["Residual", "Repeat", "Custom", "Parallel", "Block"])
        if spec.type in checks.OUT_OF_SCOPE:
            extra = "; for self-attention use SelfAttention" if spec.type == "MultiheadAttention" else ""
            raise spec.where.error(
                f"{spec.type} cannot be a layer of a spec: {checks.OUT_OF_SCOPE[spec.type]}, and each "
                "layer takes one tensor and returns one (two inputs or outputs are out of scope)",
                hint='wrap it in a Custom layer (Custom: {target: "file.py:Class"}) that takes '
                "and returns one tensor" + extra,
            )
        if spec.type in _NOT_LAYERS:
            raise spec.where.error(
                f"{spec.type} cannot be a layer of a spec (it is a container or takes several inputs)",
                hint="use Residual, Repeat or a Custom layer",
            )
        raise spec.where.error(
            f"unknown layer type {spec.type!r}: not in torch.nn nor nncli's layers",
            hint=hint
            or "a layer is a torch.nn class name (Linear, Conv2d, ReLU, ...), Residual, Repeat, Custom or Step",
        )
    return cls, None


def load_custom(spec: CustomSpec) -> type:
    """Import a Custom layer's class from ``file.py:Class`` or ``package.module:Class``."""
    where = Where(spec.where.file, spec.where.line, spec.where.column, spec.path + ".Custom.target")
    module_part, cls_name = spec.target.rsplit(":", 1)
    from nncli.spec.trust import custom_refused, refuse_custom_layers, resolve_file_target

    if custom_refused():  # before anything is imported
        refuse_custom_layers(Spec(input=(1,), layers=(spec,)))
    try:
        if module_part.endswith(".py") or "/" in module_part:
            file = resolve_file_target(spec.base_dir, module_part, where)
            if not file.is_file():
                raise where.error(
                    f"Custom target file not found: {file}", hint="a file target is relative to the spec's folder"
                )
            mod_name = f"nncli_custom_{abs(hash(str(file.resolve())))}"
            module = sys.modules.get(mod_name)
            if module is None:
                imp_spec = importlib.util.spec_from_file_location(mod_name, file)
                module = importlib.util.module_from_spec(imp_spec)
                sys.modules[mod_name] = module
                try:
                    imp_spec.loader.exec_module(module)
                except BaseException:
                    del sys.modules[mod_name]
                    raise
        else:
            module = importlib.import_module(module_part)
    except SpecError:
        raise
    except SystemExit as exc:  # a script-style file calling sys.exit() at import
        raise where.error(
            f"importing Custom target {module_part!r} called sys.exit({exc.code!r})",
            hint='guard script code with `if __name__ == "__main__":`',
        ) from None
    except ModuleNotFoundError as exc:
        raise where.error(
            f"Custom target module {module_part!r} cannot be imported: {exc}",
            hint='use "file.py:Class" for a file beside the spec',
        ) from None
    except Exception as exc:
        raise where.error(
            f"importing Custom target {module_part!r} failed: {type(exc).__name__}: {first_line(exc)}"
        ) from None
    cls = getattr(module, cls_name, None)
    if cls is None:
        classes = [n for n, v in vars(module).items() if inspect.isclass(v)]
        raise where.error(f"{module_part!r} has no class {cls_name!r}", hint=did_you_mean(cls_name, classes))
    if not (inspect.isclass(cls) and issubclass(cls, nn.Module)):
        raise where.error(f"Custom target {spec.target!r} is not an nn.Module subclass (found {type(cls).__name__})")
    return cls
