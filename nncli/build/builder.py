"""The build itself: a spec walked layer by layer into modules, shapes and counts.

``Builder`` combines the parts of a build, each in its own module: arguments and inferred
in-sizes (:mod:`~nncli.build.args`), composite blocks (:mod:`~nncli.build.blocks`), output shapes
(:mod:`~nncli.build.inference`) and initialisation (:mod:`~nncli.build.init`).
"""

from __future__ import annotations

import gc
from contextlib import contextmanager, nullcontext

import torch
from torch import nn

from nncli.build import checks
from nncli.build.args import ArgResolver
from nncli.build.blocks import GraphBlocks
from nncli.build.checks import first_line, kwargs_str
from nncli.build.graph import GraphBuild
from nncli.build.inference import INFER_BATCH, ShapeRunner, skipped_init
from nncli.build.init import InitMixin
from nncli.build.registry import resolve_class
from nncli.build.results import Built, LayerInfo
from nncli.build.scope import Scope
from nncli.errors import SpecError
from nncli.spec import BlockSpec, CustomSpec, LayerSpec, ParallelSpec, RepeatSpec, ResidualSpec, Spec
from nncli.spec.source import Where


def infer(spec: Spec) -> Built:
    """Resolve a spec on the meta device: shapes, inferred sizes, counts. Allocates nothing.

    Example:
        >>> built = infer(load_spec("specs/resnet50.yaml"))
        >>> built.output_shape
        (1000,)
    """
    with collector_paused():
        built = Builder(spec, torch.device("meta")).build()
    if spec.transfer is not None:  # frozen layers count as frozen; no weights to copy on meta
        from nncli.transfer import apply_transfer

        apply_transfer(built, load=False)
    return built


def build_model(
    spec: Spec,
    device: str | torch.device = "cpu",
    seed: int | None = 0,
    dtype: torch.dtype | None = None,
    transfer_weights: bool = True,
) -> Built:
    """Build a spec into a real, initialised ``nn.Sequential``.

    Args:
        spec: a validated spec (:func:`nncli.spec.load_spec`).
        device: where the weights live.
        seed: seeds torch's RNG before construction, so the same spec and seed give the same
            weights; ``None`` leaves the RNG alone.
        dtype: convert parameters and buffers to this dtype (e.g. ``torch.float64``).
        transfer_weights: copy the weights a ``transfer:`` section names from its run (False
            where a checkpoint of this network is loaded next: only the freezing is applied).

    Raises:
        SpecError: unknown layer, bad argument, shape mismatch, bad init; located in the file.
    """
    device = torch.device(device)
    if device.type == "meta":
        return infer(spec)
    if seed is not None:
        torch.manual_seed(seed)
    with collector_paused():
        built = Builder(spec, device).build()
    if spec.transfer is not None:
        from nncli.transfer import apply_transfer

        apply_transfer(built, load=transfer_weights)
    if dtype is not None:
        built.model.to(dtype)
    return built


def random_input(
    spec: Spec,
    batch: int,
    device: str | torch.device = "cpu",
    dtype: torch.dtype | None = None,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """A random batch for ``spec``: token ids in ``[0, high)`` for integer inputs, else normal
    values (in ``dtype``, default float32).
    """
    shape = (batch, *spec.input)
    if spec.integer_input:
        return torch.randint(
            0, spec.input_high, shape, device=device, generator=generator, dtype=getattr(torch, spec.input_dtype)
        )
    if dtype is None:
        dtype = getattr(torch, spec.input_dtype)
    return torch.randn(shape, device=device, dtype=dtype, generator=generator)


def count_params(module: nn.Module) -> tuple[int, int, int]:
    """(parameters, trainable parameters, buffer elements) of a module; shared tensors count once."""
    params = {id(p): p for p in module.parameters()}.values()
    total = sum(p.numel() for p in params)
    trainable = sum(p.numel() for p in params if p.requires_grad)
    buffers = sum(b.numel() for b in {id(b): b for b in module.buffers()}.values())
    return total, trainable, buffers


@contextmanager
def collector_paused():
    """Context (or decorator): no cyclic garbage collection while building, or counting/linting.

    A build creates many long-lived objects (modules, parameters, LayerInfos) and no garbage
    cycles; each generation-0 collection walks the young ones again, which made a build
    super-linear in depth. ``check`` and ``params`` keep the collector paused over their whole
    work too: after a build, a full collection walks every module of it, for nothing. Collection resumes
    afterwards; nested use is fine.
    """
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


class Builder(ArgResolver, GraphBlocks, ShapeRunner, InitMixin, GraphBuild):
    """One build: walks the spec, constructing each layer on meta (and on ``device``)."""

    def __init__(self, spec: Spec, device: torch.device) -> None:
        self.spec = spec
        self.device = device
        self.real = device.type != "meta"
        self._shapes: dict[tuple, tuple] = {}  # (class, args, in shape) -> out shape
        # The default init for the layers being built: the spec's top-level `init`, overridden
        # by the `init` of each enclosing Residual/Repeat (innermost last).
        self._default_init: list[dict] = [dict(spec.init or {})]
        self.scope = Scope()
        self.repeat_factor = 1  # product of the `times` of the Repeats being built around this point
        self._x_dtype: torch.dtype | None = None  # the dtype of the tensor fed to shape inference
        self._run_device = torch.device("meta")  # where `infer` runs a layer for its shape
        self.shape_method = ""  # how the last layer's shape was learnt (nncli.build.inference)

    def build(self) -> Built:
        if self.spec.graph:  # named tensors: a Graph module (nncli.build.graph)
            return self.graph_build()
        shape = tuple(self.spec.input)
        fallback = Where(str(self.spec.path) if self.spec.path else None, 1, 1, "vars")
        with self.scope.entered(self.spec.vars, self.spec.var_where, shape, fallback):
            # float inputs flow as float32 (the modules' dtype); token ids keep theirs
            infos, shape = self.sequence(
                self.spec.layers,
                shape,
                prefix=None,
                dtype=self.spec.input_dtype if self.spec.integer_input else "float32",
            )
        model = nn.Sequential(*[info.module for info in infos])
        return Built(
            self.spec,
            model,
            infos,
            tuple(self.spec.input),
            shape,
            self.device,
            self.spec.input_dtype,
            self.spec.input_high,
        )

    # -- sequences and composites -----------------------------------------------------------
    @contextmanager
    def scoped_init(self, spec: LayerSpec):
        """Context: a composite's `init` becomes the default for the layers inside it."""
        self._default_init.append({**self._default_init[-1], **dict(spec.init or {})})
        try:
            yield
        finally:
            self._default_init.pop()

    def sequence(
        self,
        layers,
        shape: tuple,
        prefix: str | None,
        role: str | None = None,
        prev_label: str | None = None,
        fqn: str = "",
        dtype: str = "float32",
    ):
        """Build layers in order; nested ones are named ``<prefix>.<i>`` unless the spec names them."""
        infos = []
        for i, layer in enumerate(layers):
            info = self.layer(layer, i, shape, prev_label, prefix, f"{fqn}{i}", dtype)
            info.role = role
            infos.append(info)
            shape, dtype = info.out_shape, info.out_dtype
            prev_label = f"{info.path} {info.type}"
        return infos, shape

    def layer(
        self,
        spec: LayerSpec,
        index: int,
        shape: tuple,
        prev_label: str | None,
        prefix: str | None,
        fqn: str,
        dtype: str = "float32",
    ) -> LayerInfo:
        kind = getattr(spec, "template", None) or spec.type  # a template's use is named after it
        default_name = f"{kind.lower()}_{index}" if prefix is None else f"{prefix}.{index}"
        if isinstance(spec, (ResidualSpec, RepeatSpec, ParallelSpec, BlockSpec)):
            return self._composite(spec, index, shape, spec.name or default_name, fqn, prev_label, dtype)
        cls, target = resolve_class(spec)
        if spec.type == "Custom" and prefix is None:
            default_name = f"{cls.__name__.lower()}_{index}"
        kwargs, inferred = self.resolve_args(spec, cls, shape, prev_label, dtype)
        # A real build infers shapes with the real module on its device (zeros, no grad): the
        # weights are being allocated anyway, and torch's Python meta kernels import
        # torch._dynamo on first use (start-up probe/gradcheck need not pay). `infer` stays on meta.
        module = self.construct(spec, cls, kwargs, self.device if self.real else torch.device("meta"))
        if checks.computes_on_ids(spec, cls.__name__, dtype):
            raise checks.integer_input_error(spec, cls.__name__, dtype, prev_label or "the input")
        out_shape, out_dtype, shape_method = self._output(spec, cls, module, kwargs, shape, prev_label, dtype)
        self.apply_init(spec, module, shape)
        total, trainable, buffers = count_params(module)
        return LayerInfo(
            index=index,
            path=spec.path,
            name=spec.name or default_name,
            type=cls.__name__,
            args=kwargs,
            in_shape=shape,
            out_shape=out_shape,
            params=total,
            trainable=trainable,
            buffers=buffers,
            module=module,
            spec=spec,
            inferred=inferred,
            target=target,
            fqn=fqn,
            in_dtype=dtype,
            out_dtype=out_dtype,
            shape_method=shape_method,
        )

    def _composite(
        self, spec: LayerSpec, index: int, shape: tuple, name: str, fqn: str, prev_label: str | None, dtype: str
    ) -> LayerInfo:
        """A residual, repeat, parallel or block layer, built inside its own variables' scope."""
        checks.check_id_merge(spec, dtype, prev_label or "the input")
        with self.scope.entered(spec.vars, spec.var_where, shape, spec.where, getattr(spec, "caller", ())):
            make = {
                ResidualSpec: self.residual,
                RepeatSpec: self.repeat,
                ParallelSpec: self.parallel,
                BlockSpec: self.block,
            }[type(spec)]
            info = make(spec, index, shape, name, fqn, prev_label, dtype)
        info.in_dtype = dtype
        return info

    def _output(
        self, spec: LayerSpec, cls: type, module, kwargs: dict, shape: tuple, prev_label: str | None, dtype: str
    ) -> tuple:
        """The layer's (output shape, output dtype, shape method), cached for torch.nn layers."""
        # torch.nn's layers are pure functions of (args, input shape) for shapes: repeated blocks
        # (a ResNet's many BatchNorms) are run once. Custom layers always run.
        key = (cls, repr(sorted(kwargs.items())), shape, dtype) if not isinstance(spec, CustomSpec) else None
        out = self._shapes.get(key) if key else None
        if out is None:
            # token ids (int) until an Embedding; every other layer gives floats
            self._x_dtype = getattr(torch, dtype) if dtype.startswith("int") else None
            try:
                out = (
                    self.forward_shape(spec, cls.__name__, module, shape, prev_label),
                    "float32" if cls.__name__ in checks.TOKEN_LAYERS or not dtype.startswith("int") else dtype,
                    self.shape_method,
                )
            except SpecError as err:
                if dtype.startswith("int") and err.hint is None:
                    err.hint = "the input is integer token ids: put an Embedding first"
                if prev_label is None and err.hint is None and self.fits_without_first_dim(spec, cls, shape):
                    err.hint = (
                        "`input` is the shape of ONE example, without the batch dimension: "
                        f"did you mean input: {list(shape[1:])}?"
                    )
                raise
            if key:
                self._shapes[key] = out
        return out

    def fits_without_first_dim(self, spec: LayerSpec, cls: type, shape: tuple) -> bool:
        """Whether the network's first layer would build with `input` minus its first dim."""
        if len(shape) < 2:
            return False
        try:
            kwargs, _ = self.resolve_args(spec, cls, shape[1:], None, self.spec.input_dtype)
            module = self.construct(spec, cls, kwargs, torch.device("meta"))
            self._forward_batch(spec, cls.__name__, module, shape[1:], None, INFER_BATCH, device=torch.device("meta"))
        except SpecError:
            return False
        return True

    def block_info(
        self, spec: LayerSpec, index: int, shape: tuple, name: str, fqn: str, type_name: str, args: dict
    ) -> LayerInfo:
        """A block's LayerInfo before its contents are built (module and counts filled in later)."""
        return LayerInfo(
            index=index,
            path=spec.path,
            name=name,
            type=type_name,
            args=args,
            in_shape=shape,
            out_shape=shape,
            params=0,
            trainable=0,
            buffers=0,
            module=None,
            spec=spec,
            fqn=fqn,
        )  # type: ignore[arg-type]

    @staticmethod
    def count(module: nn.Module) -> tuple[int, int, int]:
        return count_params(module)

    def construct(self, spec: LayerSpec, cls: type, kwargs: dict, device: torch.device) -> nn.Module:
        try:
            with device, skipped_init() if device.type == "meta" else nullcontext():
                return cls(**kwargs)
        except Exception as exc:  # torch's own argument checks: report them at the layer
            raise spec.where.error(f"{cls.__name__}({kwargs_str(kwargs)}) failed: {first_line(exc)}") from None
