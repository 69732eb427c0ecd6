"""Spec -> ``torch.nn.Sequential``: layer registry, shape inference and initialisation.

Shape inference runs every layer on *meta* tensors, so torch's own semantics decide each shape
and nothing is allocated: a 100-billion-parameter spec is resolved in a fraction of a second.
The sizes coming into a layer (``in_features``, ``in_channels``, ``num_features``,
``num_channels``, a missing ``normalized_shape``, ...) are inferred from the shape that reaches
it; when the spec gives them they are checked against it.

Every failure becomes a :class:`~nncli.errors.SpecError` that points at the layer in the file.
"""

from __future__ import annotations

import importlib
import importlib.util
import inspect
import re
import sys
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from nncli.errors import SpecError, did_you_mean
from nncli.modules import Repeat, Residual, Step
from nncli.spec import CustomSpec, InitScheme, LayerSpec, RepeatSpec, ResidualSpec, Spec
from nncli.spec.source import Where

# Shape inference pushes this many examples through each layer: 2, not 1, because BatchNorm in
# train mode refuses a batch of one example per channel.
INFER_BATCH = 2

# Argument name -> how to read it off the incoming per-example shape (no batch dim).
_INFERRED: dict[str, Any] = {
    "in_features": lambda s: s[-1],  # Linear: the last dim
    "in_channels": lambda s: s[0],  # ConvNd / ConvTransposeNd: channels first
    "num_features": lambda s: s[0],  # BatchNormNd / InstanceNormNd
    "num_channels": lambda s: s[0],  # GroupNorm
    "normalized_shape": lambda s: s[-1],  # LayerNorm / RMSNorm: normalise the last dim
    "input_size": lambda s: s[-1],  # RNN / LSTM / GRU
}

# Arguments that must be positive integers (or tuples of them) wherever a layer takes them.
_POSITIVE = {
    "in_features", "out_features", "in_channels", "out_channels", "num_features", "kernel_size",
    "stride", "dilation", "groups", "num_channels", "num_groups", "num_embeddings",
    "embedding_dim", "hidden_size", "num_layers", "upscale_factor", "downscale_factor",
}
_NON_NEGATIVE = {"padding", "output_padding"}
# ... of which these are one number, never a per-dimension list.
_SCALAR = _POSITIVE - {"kernel_size", "stride", "dilation"}

# torch.nn classes that are containers or need several inputs: not layers of a Sequential spec.
_NOT_LAYERS = {"Module", "Sequential", "ModuleList", "ModuleDict", "ParameterList", "ParameterDict",
               "Container", "MultiheadAttention", "Transformer", "TransformerDecoder",
               "TransformerDecoderLayer", "Bilinear"}

_NNCLI_CLASSES = {"Step": Step, "Identity": nn.Identity}


@dataclass
class LayerInfo:
    """What the builder knows about one layer (top level or nested).

    ``in_shape``/``out_shape`` are per example (no batch dim). ``children`` holds a Residual's
    body then shortcut layers (``role`` "body"/"shortcut") or a Repeat's copies (``role``
    "copy 1", ...).
    """

    index: int  # position among its siblings
    path: str  # "layers[3]" or "layers[3].Residual.body[0]"
    name: str  # the spec's `name`, else "<type lower>_<index>"
    type: str  # "Conv2d", "Residual", "Repeat", or a Custom layer's class name
    args: dict  # resolved constructor kwargs, inferred ones included
    in_shape: tuple
    out_shape: tuple
    params: int
    trainable: int
    buffers: int
    module: nn.Module
    spec: LayerSpec = field(repr=False)
    children: list["LayerInfo"] = field(default_factory=list)
    role: str | None = None
    inferred: tuple = ()  # names of the args nncli inferred
    target: str | None = None  # a Custom layer's target
    fqn: str = ""  # the module's name in ``model.named_modules()``: "3", "3.body.0", "4.1.0"

    def walk(self):
        """This layer and every nested one, depth first."""
        yield self
        for child in self.children:
            yield from child.walk()


@dataclass
class Built:
    """A built network and its per-layer description."""

    spec: Spec
    model: nn.Sequential
    layers: list[LayerInfo]
    input_shape: tuple
    output_shape: tuple
    device: torch.device

    def walk(self):
        """Every layer, nested ones included, depth first."""
        for layer in self.layers:
            yield from layer.walk()


def infer(spec: Spec) -> Built:
    """Resolve a spec on the meta device: shapes, inferred sizes, counts. Allocates nothing.

    Example:
        >>> built = infer(load_spec("specs/resnet50.yaml"))
        >>> built.output_shape
        (1000,)
    """
    return _Builder(spec, torch.device("meta")).build()


def build_model(spec: Spec, device: str | torch.device = "cpu", seed: int | None = 0,
                dtype: torch.dtype | None = None) -> Built:
    """Build a spec into a real, initialised ``nn.Sequential``.

    Args:
        spec: a validated spec (:func:`nncli.spec.load_spec`).
        device: where the weights live.
        seed: seeds torch's RNG before construction, so the same spec and seed give the same
            weights; ``None`` leaves the RNG alone.
        dtype: convert parameters and buffers to this dtype (e.g. ``torch.float64``).

    Raises:
        SpecError: unknown layer, bad argument, shape mismatch, bad init; located in the file.
    """
    device = torch.device(device)
    if device.type == "meta":
        return infer(spec)
    if seed is not None:
        torch.manual_seed(seed)
    built = _Builder(spec, device).build()
    if dtype is not None:
        built.model.to(dtype)
    return built


def count_params(module: nn.Module) -> tuple[int, int, int]:
    """(parameters, trainable parameters, buffer elements) of a module; shared tensors count once."""
    params = {id(p): p for p in module.parameters()}.values()
    total = sum(p.numel() for p in params)
    trainable = sum(p.numel() for p in params if p.requires_grad)
    buffers = sum(b.numel() for b in {id(b): b for b in module.buffers()}.values())
    return total, trainable, buffers


def shape_str(shape: tuple) -> str:
    """(3, 32, 32) -> "[N, 3, 32, 32]": the batch shown as N."""
    return "[" + ", ".join(["N", *map(str, shape)]) + "]"


def layer_classes() -> dict[str, type]:
    """Every layer class a spec may name: torch.nn's modules plus nncli's own."""
    out = {}
    for name in dir(nn):
        obj = getattr(nn, name)
        if (inspect.isclass(obj) and issubclass(obj, nn.Module) and not name.startswith("_")
                and name not in _NOT_LAYERS and not name.startswith("Lazy")):
            out[name] = obj
    out.update(_NNCLI_CLASSES)
    return out


class _Builder:
    """One build: walks the spec, constructing each layer on meta (and on ``device``)."""

    def __init__(self, spec: Spec, device: torch.device) -> None:
        self.spec = spec
        self.device = device
        self.real = device.type != "meta"
        self._classes: dict[str, type] | None = None
        self._shapes: dict[tuple, tuple] = {}  # (class, args, in shape) -> out shape
        # The default init for the layers being built: the spec's top-level `init`, overridden
        # by the `init` of each enclosing Residual/Repeat (innermost last).
        self._default_init: list[dict] = [dict(spec.init or {})]

    def build(self) -> Built:
        infos, shape = self.sequence(self.spec.layers, tuple(self.spec.input), prefix=None)
        model = nn.Sequential(*[info.module for info in infos])
        return Built(self.spec, model, infos, tuple(self.spec.input), shape, self.device)

    # -- sequences and composites -----------------------------------------------------------
    @contextmanager
    def scoped_init(self, spec: LayerSpec):
        """Context: a composite's `init` becomes the default for the layers inside it."""
        self._default_init.append({**self._default_init[-1], **dict(spec.init or {})})
        try:
            yield
        finally:
            self._default_init.pop()

    def sequence(self, layers, shape: tuple, prefix: str | None, role: str | None = None,
                 prev_label: str | None = None, fqn: str = ""):
        """Build layers in order; nested ones are named ``<prefix>.<i>`` unless the spec names them."""
        infos = []
        for i, layer in enumerate(layers):
            info = self.layer(layer, i, shape, prev_label, prefix, f"{fqn}{i}")
            info.role = role
            infos.append(info)
            shape = info.out_shape
            prev_label = f"{info.path} {info.type}"
        return infos, shape

    def layer(self, spec: LayerSpec, index: int, shape: tuple, prev_label: str | None,
              prefix: str | None, fqn: str) -> LayerInfo:
        default_name = f"{spec.type.lower()}_{index}" if prefix is None else f"{prefix}.{index}"
        if isinstance(spec, ResidualSpec):
            return self.residual(spec, index, shape, spec.name or default_name, fqn, prev_label)
        if isinstance(spec, RepeatSpec):
            return self.repeat(spec, index, shape, spec.name or default_name, fqn, prev_label)
        cls, target = self.resolve_class(spec)
        if spec.type == "Custom" and prefix is None:
            default_name = f"{cls.__name__.lower()}_{index}"
        kwargs, inferred = self.resolve_args(spec, cls, shape, prev_label)
        # A real build infers shapes with the real module on its device (zeros, no grad): the
        # weights are being allocated anyway, and torch's Python meta kernels import
        # torch._dynamo on first use (~1.4 s of start-up for probe/gradcheck). `infer` stays on meta.
        module = self.construct(spec, cls, kwargs, self.device if self.real else torch.device("meta"))
        # torch.nn's layers are pure functions of (args, input shape) for shapes: repeated blocks
        # (a ResNet's many BatchNorms) are run once. Custom layers always run.
        key = (cls, repr(sorted(kwargs.items())), shape) if not isinstance(spec, CustomSpec) else None
        out_shape = self._shapes.get(key) if key else None
        if out_shape is None:
            try:
                out_shape = self.forward_shape(spec, cls.__name__, module, shape, prev_label)
            except SpecError as err:
                if prev_label is None and err.hint is None and self.fits_without_first_dim(spec, cls, shape):
                    err.hint = ("`input` is the shape of ONE example, without the batch dimension: "
                                f"did you mean input: {list(shape[1:])}?")
                raise
            if key:
                self._shapes[key] = out_shape
        self.apply_init(spec, module)
        total, trainable, buffers = count_params(module)
        return LayerInfo(
            index=index, path=spec.path, name=spec.name or default_name, type=cls.__name__,
            args=kwargs, in_shape=shape, out_shape=out_shape, params=total, trainable=trainable,
            buffers=buffers, module=module, spec=spec, inferred=inferred, target=target, fqn=fqn,
        )

    def fits_without_first_dim(self, spec: LayerSpec, cls: type, shape: tuple) -> bool:
        """Whether the network's first layer would build with `input` minus its first dim."""
        if len(shape) < 2:
            return False
        try:
            kwargs, _ = self.resolve_args(spec, cls, shape[1:], None)
            module = self.construct(spec, cls, kwargs, torch.device("meta"))
            self._forward_batch(spec, cls.__name__, module, shape[1:], None, INFER_BATCH,
                                device=torch.device("meta"))
        except SpecError:
            return False
        return True

    def residual(self, spec: ResidualSpec, index: int, shape: tuple, name: str, fqn: str,
                 prev_label: str | None = None) -> LayerInfo:
        info = LayerInfo(index=index, path=spec.path, name=name, type="Residual", args={},
                         in_shape=shape, out_shape=shape, params=0, trainable=0, buffers=0,
                         module=None, spec=spec, fqn=fqn)  # type: ignore[arg-type]
        # Both branches receive what the layer before the Residual gives.
        with self.scoped_init(spec):
            body, body_shape = self.sequence(spec.body, shape, f"{name}.body", "body", prev_label,
                                             fqn=f"{fqn}.body.")
            shortcut, short_shape = self.sequence(spec.shortcut, shape, f"{name}.shortcut",
                                                  "shortcut", prev_label, fqn=f"{fqn}.shortcut.")
        if body_shape != short_shape:
            what = "its shortcut" if spec.shortcut else "the identity shortcut"
            raise spec.where.error(
                f"Residual: the body gives {shape_str(body_shape)} but {what} gives "
                f"{shape_str(short_shape)}; body(x) + shortcut(x) needs equal shapes",
                hint=_projection_hint(shape, body_shape) if not spec.shortcut else
                "make the shortcut end in the body's shape",
            )
        body_mod = nn.Sequential(*[c.module for c in body])
        short_mod = nn.Sequential(*[c.module for c in shortcut]) if shortcut else nn.Identity()
        info.module = Residual(body_mod, short_mod)
        info.children = body + shortcut
        info.out_shape = body_shape
        info.params, info.trainable, info.buffers = count_params(info.module)
        return info

    def repeat(self, spec: RepeatSpec, index: int, shape: tuple, name: str, fqn: str,
               prev_label: str | None = None) -> LayerInfo:
        info = LayerInfo(index=index, path=spec.path, name=name, type="Repeat",
                         args={"times": spec.times}, in_shape=shape, out_shape=shape, params=0,
                         trainable=0, buffers=0, module=None, spec=spec, fqn=fqn)  # type: ignore[arg-type]
        copies = []
        for copy in range(spec.times):
            with self.scoped_init(spec):
                layers, shape = self.sequence(spec.layers, shape, f"{name}.{copy}", f"copy {copy + 1}",
                                              prev_label, fqn=f"{fqn}.{copy}.")
            prev_label = f"{layers[-1].path} {layers[-1].type} (copy {copy + 1})"
            copies.append(layers)
            info.children.extend(layers)
        info.module = Repeat(*[nn.Sequential(*[c.module for c in layers]) for layers in copies])
        info.out_shape = shape
        info.params, info.trainable, info.buffers = count_params(info.module)
        return info

    # -- one leaf layer -----------------------------------------------------------------------
    def resolve_class(self, spec: LayerSpec) -> tuple[type, str | None]:
        if isinstance(spec, CustomSpec):
            return load_custom(spec), spec.target
        if self._classes is None:
            self._classes = layer_classes()
        cls = self._classes.get(spec.type)
        if cls is None:
            hint = did_you_mean(spec.type, list(self._classes) + ["Residual", "Repeat", "Custom"])
            if spec.type in _NOT_LAYERS:
                raise spec.where.error(f"{spec.type} cannot be a layer of a spec (it is a container or "
                                       "takes several inputs)", hint="use Residual, Repeat or a Custom layer")
            raise spec.where.error(f"unknown layer type {spec.type!r}: not in torch.nn nor nncli's layers",
                                   hint=hint or "a layer is a torch.nn class name (Linear, Conv2d, ReLU, ...), "
                                                "Residual, Repeat, Custom or Step")
        return cls, None

    def resolve_args(self, spec: LayerSpec, cls: type, shape: tuple, prev_label: str | None):
        params = _signature(cls)
        accepts_any = any(p.kind is p.VAR_KEYWORD for p in params.values())
        names = [n for n, p in params.items() if p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)]
        kwargs: dict[str, Any] = {}
        for key, value in spec.args.items():
            where = spec.arg_where.get(key, spec.where)
            if key not in params and not accepts_any:
                hint = did_you_mean(key, names) or ("it takes: " + ", ".join(names) if names
                                                    else "it takes no arguments")
                raise where.error(f"{cls.__name__} has no argument {key!r}", hint=hint)
            kwargs[key] = _check_value(key, value, where, cls.__name__,
                                       params[key].default if key in params else inspect.Parameter.empty)
        inferred = []
        came_from = prev_label or "the input"
        if "batch_first" in params:
            # A spec's tensors are [N, ...]: with torch's default batch_first=False a
            # TransformerEncoderLayer (or RNN) would read the batch as the sequence and mix
            # examples, with every shape still right.
            if kwargs.get("batch_first", True) is not True:
                raise spec.arg_where.get("batch_first", spec.where).error(
                    f"{cls.__name__}: batch_first=false would read dim 0 of [N, ...] as the sequence, "
                    "mixing the examples of a batch", hint="leave batch_first out (nncli sets it true)")
            if "batch_first" not in kwargs:
                kwargs["batch_first"] = True
                inferred.append("batch_first")
        for key, read in _INFERRED.items():
            if key not in params:
                continue
            try:
                size = read(shape)
            except IndexError:
                raise spec.where.error(f"{cls.__name__} needs an input with a {key.replace('_', ' ')} "
                                       f"dimension, but {came_from} gives {shape_str(shape)}") from None
            if key in kwargs:
                given = kwargs[key]
                if key == "normalized_shape":  # may name several trailing dims
                    want = tuple(given) if isinstance(given, (tuple, list)) else (given,)
                    ok = tuple(shape[len(shape) - len(want):]) == want
                else:
                    ok = given == size
                if not ok:
                    where = spec.arg_where.get(key, spec.where)
                    raise where.error(f"{cls.__name__}: {key}={given}, but {came_from} gives "
                                      f"{shape_str(shape)} ({key} {size})",
                                      hint=f"leave {key} out: nncli infers it from the incoming shape")
            elif params[key].default is inspect.Parameter.empty or key == "normalized_shape":
                kwargs[key] = size
                inferred.append(key)
        missing = [n for n, p in params.items()
                   if p.default is inspect.Parameter.empty and n not in kwargs
                   and p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)]
        if missing:
            raise spec.where.error(f"{cls.__name__} needs {', '.join(f'`{m}`' for m in missing)}, found no value",
                                   hint=f"e.g. `- {spec.type}: {{{missing[0]}: ...}}`")
        self.check_dims(spec, cls, kwargs, shape)
        return kwargs, tuple(inferred)

    def check_dims(self, spec: LayerSpec, cls: type, kwargs: dict, shape: tuple) -> None:
        """Checks torch's meta kernels skip: tuple lengths of an Nd layer, `dim` in range."""
        nd = re.search(r"([123])d$", cls.__name__)
        if nd and cls.__name__.startswith(("Conv", "MaxPool", "AvgPool", "LPPool", "AdaptiveMaxPool",
                                             "AdaptiveAvgPool")):
            n = int(nd.group(1))
            for key in ("kernel_size", "stride", "padding", "dilation", "output_padding", "output_size"):
                value = kwargs.get(key)
                if isinstance(value, tuple) and len(value) != n:
                    raise spec.arg_where.get(key, spec.where).error(
                        f"{cls.__name__}: expected `{key}` to be one integer or a list of {n}, found "
                        f"{list(value)} ({len(value)} values)")
        ndim = len(shape) + 1  # the batch dimension counts for torch's `dim`
        for key in ("dim", "start_dim", "end_dim"):
            value = kwargs.get(key)
            if isinstance(value, int) and not isinstance(value, bool) and not -ndim <= value < ndim:
                raise spec.arg_where.get(key, spec.where).error(
                    f"{cls.__name__}: {key}={value} is out of range for the incoming "
                    f"{shape_str(shape)} ({ndim} dims): expected {-ndim} to {ndim - 1}")

    def construct(self, spec: LayerSpec, cls: type, kwargs: dict, device: torch.device) -> nn.Module:
        try:
            with device:
                return cls(**kwargs)
        except Exception as exc:  # torch's own argument checks: report them at the layer
            raise spec.where.error(f"{cls.__name__}({_kwargs_str(kwargs)}) failed: {_first_line(exc)}") from None

    def forward_shape(self, spec: LayerSpec, type_name: str, module: nn.Module, shape: tuple,
                      prev_label: str | None) -> tuple:
        # Two batch sizes: many torch layers also take *unbatched* input, and with one batch
        # size N a layer can read [N, 2, 16] as one unbatched [C=2, H, W] example whose output
        # happens to start with N (Conv2d with out_channels = N). A second N exposes that.
        first = self._forward_batch(spec, type_name, module, shape, prev_label, INFER_BATCH)
        if _keeps_batch(module):
            return first
        try:
            second = self._forward_batch(spec, type_name, module, shape, prev_label, INFER_BATCH + 1)
        except SpecError as err:
            second = err.message
        if first != second:
            found = shape_str(second) if isinstance(second, tuple) else f"an error ({second})"
            raise spec.where.error(
                f"{type_name} reads the batch dimension as part of an example: the incoming "
                f"{shape_str(shape)} gives {shape_str(first)} for N={INFER_BATCH} but {found} "
                f"for N={INFER_BATCH + 1}",
                hint=f"{type_name} probably needs one more dimension per example than {list(shape)}")
        return first

    def _forward_batch(self, spec: LayerSpec, type_name: str, module: nn.Module, shape: tuple,
                       prev_label: str | None, batch: int, device: torch.device | None = None) -> tuple:
        # Eval mode: the same shapes, and BatchNorm's meta kernel skips the running-stat update
        # (half the time on a ResNet-50).
        training = module.training
        if device is None:
            device = self.device if self.real else torch.device("meta")
        try:
            with torch.no_grad():
                x = torch.zeros((batch, *shape), device=device)  # may overflow int64 sizes
                y = module.eval()(x)
        except Exception as exc:
            came_from = prev_label or "the input"
            raise spec.where.error(
                f"{type_name} cannot take the shape {shape_str(shape)} that {came_from} gives: "
                f"{_first_line(exc)}") from None
        finally:
            module.train(training)
        if not isinstance(y, torch.Tensor):
            raise spec.where.error(f"{type_name} returns {type(y).__name__}, not a tensor; a spec is a "
                                   "sequence of layers with one tensor in and one out",
                                   hint="wrap it in a Custom layer that returns one tensor")
        if y.dim() == 0 or y.shape[0] != batch:
            raise spec.where.error(f"{type_name} does not keep the batch dimension: [N={batch}, ...] "
                                   f"in, {list(y.shape)} out")
        if any(d == 0 for d in y.shape[1:]):
            raise spec.where.error(f"{type_name} turns {shape_str(shape)} into the empty shape "
                                   f"{shape_str(tuple(y.shape[1:]))}",
                                   hint="the input is too small for this kernel/stride/padding")
        return tuple(y.shape[1:])

    # -- initialisation -----------------------------------------------------------------------
    def apply_init(self, spec: LayerSpec, module: nn.Module) -> None:
        schemes: dict[str, InitScheme] = {}
        own = dict(spec.init or {})
        default = self._default_init[-1]
        if default:
            # The default (spec-wide, or a Residual's/Repeat's) is for affine layers (weights of
            # 2+ dims: Linear, Conv), and their biases; normalisation layers keep torch's init
            # (gamma = 1, beta = 0).
            weight = getattr(module, "weight", None)
            if isinstance(weight, torch.Tensor) and weight.dim() >= 2:
                for pname, scheme in default.items():
                    if isinstance(getattr(module, pname, None), torch.Tensor):
                        schemes[pname] = scheme
        schemes.update(own)
        named = dict(module.named_parameters())
        for pname, scheme in schemes.items():
            if pname not in named:
                if pname in own:
                    raise scheme.where.error(
                        f"{type(module).__name__} has no parameter {pname!r} to initialise",
                        hint=did_you_mean(pname, named) or ("its parameters: " + ", ".join(named)
                                                            if named else "it has no parameters"))
                continue
            init_tensor(named[pname], scheme)


def init_tensor(tensor: torch.Tensor, scheme: InitScheme) -> None:
    """Apply one init scheme in place; errors are located at the scheme in the spec."""
    import torch.nn.init as tinit

    try:
        with torch.no_grad():
            if scheme.scheme == "lecun_normal":
                if tensor.dim() < 2:
                    raise ValueError("fan_in cannot be computed for a tensor with fewer than 2 dimensions")
                fan_in = tensor[0].numel()  # (out, in, *kernel): in * prod(kernel)
                tensor.normal_(0.0, fan_in ** -0.5, **scheme.kwargs)
            else:
                getattr(tinit, scheme.scheme + "_")(tensor, **scheme.kwargs)
    except NotImplementedError:
        if tensor.device.type != "meta":  # some schemes (orthogonal's QR) have no meta kernel
            raise
    except (TypeError, ValueError, RuntimeError) as exc:
        raise scheme.where.error(f"init {scheme.scheme} on a tensor of shape {list(tensor.shape)} "
                                 f"failed: {_first_line(exc)}") from None


def load_custom(spec: CustomSpec) -> type:
    """Import a Custom layer's class from ``file.py:Class`` or ``package.module:Class``."""
    where = Where(spec.where.file, spec.where.line, spec.where.column, spec.path + ".Custom.target")
    module_part, cls_name = spec.target.rsplit(":", 1)
    try:
        if module_part.endswith(".py") or "/" in module_part:
            file = (spec.base_dir or Path.cwd()) / module_part
            if not file.is_file():
                raise where.error(f"Custom target file not found: {file}",
                                  hint="a file target is relative to the spec's folder")
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
        raise where.error(f"importing Custom target {module_part!r} called sys.exit({exc.code!r})",
                          hint="guard script code with `if __name__ == \"__main__\":`") from None
    except ModuleNotFoundError as exc:
        raise where.error(f"Custom target module {module_part!r} cannot be imported: {exc}",
                          hint="use \"file.py:Class\" for a file beside the spec") from None
    except Exception as exc:
        raise where.error(f"importing Custom target {module_part!r} failed: "
                          f"{type(exc).__name__}: {_first_line(exc)}") from None
    cls = getattr(module, cls_name, None)
    if cls is None:
        classes = [n for n, v in vars(module).items() if inspect.isclass(v)]
        raise where.error(f"{module_part!r} has no class {cls_name!r}", hint=did_you_mean(cls_name, classes))
    if not (inspect.isclass(cls) and issubclass(cls, nn.Module)):
        raise where.error(f"Custom target {spec.target!r} is not an nn.Module subclass "
                          f"(found {type(cls).__name__})")
    return cls


# -- small helpers ----------------------------------------------------------------------------
# Layers that always read dim 0 as the batch (no unbatched form): one meta pass is enough.
_BATCH_FIRST = {"Linear", "Identity", "Flatten", "BatchNorm1d", "BatchNorm2d", "BatchNorm3d",
                "LayerNorm", "RMSNorm", "GroupNorm", "Dropout", "AlphaDropout", "Step"}
_NOT_ELEMENTWISE = {"Softmax", "Softmin", "LogSoftmax", "Softmax2d", "GLU", "MultiheadAttention",
                    "PReLU"}


def _keeps_batch(module: nn.Module) -> bool:
    cls = type(module)
    if cls.__name__ in _BATCH_FIRST:
        return True
    # torch's elementwise activations (ReLU, Tanh, ...) map any shape to itself
    return cls.__module__ == "torch.nn.modules.activation" and cls.__name__ not in _NOT_ELEMENTWISE


def _signature(cls: type) -> dict[str, inspect.Parameter]:
    if cls.__init__ is nn.Module.__init__:
        return {}  # no __init__ of its own (Step, many Custom layers): takes no arguments
    if cls.__init__ in (nn.RNN.__init__, nn.LSTM.__init__, nn.GRU.__init__):
        # torch's RNN/LSTM/GRU take (*args, **kwargs) and pass them to RNNBase(mode, ...): use
        # that signature, so input_size is inferred and a misspelt argument gets a did-you-mean.
        params = dict(inspect.signature(nn.RNNBase.__init__).parameters)
        params.pop("mode")
        if cls.__init__ is nn.RNN.__init__:
            params["nonlinearity"] = inspect.Parameter("nonlinearity", inspect.Parameter.KEYWORD_ONLY,
                                                       default="tanh")
    else:
        params = dict(inspect.signature(cls.__init__).parameters)
    params.pop("self", None)
    for framework in ("device", "dtype"):  # placement is nncli's job, not the spec's
        params.pop(framework, None)
    return params


def _check_value(key: str, value: Any, where: Where, type_name: str,
                 default: Any = inspect.Parameter.empty) -> Any:
    if value is None and default is None:
        return value  # the signature's own "not given" (MaxPool2d's stride)
    if isinstance(default, bool) and not isinstance(value, bool):
        # torch would take any truthy value: `bias: nope` must not mean bias=True
        raise where.error(f"{type_name}: expected `{key}` to be true or false, found {value!r}")
    if isinstance(value, list):
        value = tuple(value)
    items = value if isinstance(value, tuple) else (value,)
    if key in _POSITIVE or key in _NON_NEGATIVE:
        low = 1 if key in _POSITIVE else 0
        bad = [v for v in items if isinstance(v, bool) or not isinstance(v, int) or not low <= v < 2**63]
        if key == "padding" and isinstance(value, str):
            bad = [] if value in ("same", "valid") else [value]
        if isinstance(value, tuple) and key in _SCALAR:
            bad = [value]
        if bad or not items:
            need = "a positive integer" if low else "an integer >= 0"
            need += "" if key in _SCALAR else " (or a list of them)"
            raise where.error(f"{type_name}: expected `{key}` to be {need}, found {value!r}")
    if key == "p" and (isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value <= 1):
        raise where.error(f"{type_name}: expected `p` to be a probability in [0, 1], found {value!r}")
    return value


def _projection_hint(shape: tuple, out: tuple) -> str:
    if len(shape) >= 2 and len(out) == len(shape):
        stride = shape[1] // out[1] if out[1] and shape[1] % out[1] == 0 else 1
        return (f"add a projection shortcut: shortcut: [{{Conv2d: {{out_channels: {out[0]}, kernel_size: 1, "
                f"stride: {stride}, bias: false}}}}, BatchNorm2d]" if len(shape) == 3 else
                f"add a projection shortcut: shortcut: [{{Conv1d: {{out_channels: {out[0]}, kernel_size: 1, "
                f"stride: {stride}}}}}]")
    return f"add a projection shortcut: shortcut: [{{Linear: {{out_features: {out[-1]}}}}}]"


def _kwargs_str(kwargs: dict) -> str:
    return ", ".join(f"{k}={v!r}" for k, v in kwargs.items())


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip() or type(exc).__name__
    return text.splitlines()[0]
