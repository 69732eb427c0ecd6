"""The build of a spec with named tensors (``inputs``, ``from``, ``Merge``, ``share``, ``tie``,
``memory``, ``outputs``) into an :class:`nncli.modules.Graph`, as a mixin of the builder.

Shapes flow through a dict of named tensors as they flow through a chain: each element reads the
previous output or a named tensor, is built by the builder's own ``layer`` (so every argument,
inference and error is the chain's), and its output is stored under its name. A named top-level
element registers as a submodule of that name; an unnamed one by its position.
"""

from __future__ import annotations

from contextlib import nullcontext
from dataclasses import dataclass, field

import torch
from torch import nn

from nncli import modules as nm
from nncli.build.checks import shape_str
from nncli.build.results import Built, LayerInfo
from nncli.modules.graph import Step
from nncli.spec import BlockSpec, LayerSpec, MergeSpec, RepeatSpec
from nncli.spec.graph import needs_env
from nncli.spec.source import Where


@dataclass
class Tensor:
    """A named tensor during the build: its per-example shape, dtype and (token ids) high."""

    shape: tuple
    dtype: str
    high: int | None
    label: str | None  # how errors name where it comes from; None: the network's input
    info: LayerInfo | None = None  # the element that gave it (share and tie read its module)


@dataclass
class Part:
    """A built element list: modules to register, steps to run, infos, the names, the last output."""

    modules: dict = field(default_factory=dict)
    steps: list = field(default_factory=list)
    infos: list = field(default_factory=list)
    env: dict = field(default_factory=dict)
    last: Tensor | None = None


class GraphBuild:
    """Mixin for the builder: needs its ``layer``, ``scope``, ``scoped_init``, ``resolve_args``,
    ``construct``, ``apply_init``, ``block_info``, ``repeat_times`` and ``count``."""

    def graph_build(self) -> Built:
        spec = self.spec
        inputs = spec.input_specs
        env = {
            i.name: Tensor(i.shape, i.dtype, i.high, None if n == 0 else f"input {i.name!r}")
            for n, i in enumerate(inputs)
        }
        fallback = Where(str(spec.path) if spec.path else None, 1, 1, "vars")
        with self.scope.entered(spec.vars, spec.var_where, inputs[0].shape, fallback):
            part = self.graph_list(spec.layers, env, env[inputs[0].name], None, "", None, top=True)
        names = spec.outputs or ("output",)
        outs = [part.env[n] if spec.outputs else part.last for n in names]
        table = tuple((i.name, tuple(i.shape), i.dtype, i.high) for i in inputs)
        model = nm.Graph(part.modules, part.steps, list(table), list(spec.outputs))
        return Built(
            spec,
            model,
            part.infos,
            tuple(inputs[0].shape),
            outs[0].shape,
            self.device,
            inputs[0].dtype,
            inputs[0].high,
            inputs=table,
            outputs=tuple((n, t.shape, t.dtype) for n, t in zip(names, outs)),
        )

    def graph_list(self, layers, env: dict, first: Tensor, prefix, fqn: str, role, top: bool = False) -> Part:
        """Build one element list; names defined in it stay in the returned part's ``env``."""
        part = Part(env=dict(env), last=first)
        for i, layer in enumerate(layers):
            x = part.env[layer.source] if layer.source else part.last
            key = layer.name if top and layer.name else str(i)
            if top and layer.name:
                _check_key(layer, key)
            info, step, out = self.graph_element(layer, i, x, part.env, prefix, f"{fqn}{key}")
            info.role = role
            part.infos.append(info)
            if not layer.share:
                part.modules[key] = info.module
            part.steps.append(step)
            if layer.name:
                part.env[layer.name] = out
            part.env.update(getattr(info, "accumulated", {}))
            part.last = out
        return part

    def graph_element(self, layer: LayerSpec, index: int, x: Tensor, env: dict, prefix, fqn: str):
        """One element: its LayerInfo, its step and its output tensor."""
        if layer.share:
            info = self.shared_element(layer, index, x, env[layer.share].info)
        elif isinstance(layer, MergeSpec):
            info = self.merge_element(layer, index, [env[n] for n in layer.sources], fqn)
        else:
            self.tensor_high = x.high  # an Embedding's vocabulary: the high of the tensor it reads
            if layer.memory:
                info = self.memory_layer(layer, index, x, env[layer.memory], prefix, fqn)
            elif isinstance(layer, (BlockSpec, RepeatSpec)) and needs_env(layer):
                info = self.graph_composite(layer, index, x, env, prefix, fqn)
            else:
                info = self.layer(layer, index, x.shape, x.label, prefix, fqn, x.dtype)
            for param, name in (layer.tie or {}).items():
                tie_parameter(layer, info, param, name, env[name].info)
        reads = tuple(name for _, name in _reads(layer))
        info.reads = reads
        sources = layer.sources if isinstance(layer, MergeSpec) else (layer.source,)
        step = Step(
            info.module,
            source=sources[0],
            extra=tuple(sources[1:]) + ((layer.memory,) if layer.memory else ()),
            env=isinstance(info.module, (nm.GraphBlock, nm.GraphRepeat)),
            name=layer.name,
        )
        high = x.high if info.out_dtype.startswith("int") else None
        return info, step, Tensor(info.out_shape, info.out_dtype, high, f"{info.path} {info.type}", info)

    def shared_element(self, layer: LayerSpec, index: int, x: Tensor, target: LayerInfo) -> LayerInfo:
        """``share: NAME``: the named element's module applied again (no parameters of its own)."""
        where = layer.graph_where.get("share", layer.where)
        if layer.type not in (target.type, target.spec.type):
            raise where.error(
                f"`share: {layer.share}` is a {target.spec.type}, but this element is written as {layer.type}",
                hint=f"write it as `- {target.spec.type}: {{share: {layer.share}}}`",
            )
        out_shape = target.out_shape
        if tuple(x.shape) != tuple(target.in_shape) or x.dtype != target.in_dtype:
            out_shape = _shared_shape(target, x, where, layer.share)
        return LayerInfo(
            index=index,
            path=layer.path,
            name=layer.name or f"{target.name} (shared)",
            type=target.type,
            args=target.args,
            in_shape=tuple(x.shape),
            out_shape=out_shape,
            params=0,
            trainable=0,
            buffers=0,
            module=target.module,
            spec=layer,
            fqn=target.fqn,
            in_dtype=x.dtype,
            out_dtype=target.out_dtype,
            shared=layer.share,
        )

    def merge_element(self, layer: MergeSpec, index: int, operands: list[Tensor], fqn: str) -> LayerInfo:
        """``Merge``: the joined shape, or a located error that shows every operand's shape."""
        module = nm.Merge(layer.merge, layer.dim)
        out_shape = merge_shape(layer, operands, module)
        dtypes = {t.dtype for t in operands}
        return LayerInfo(
            index=index,
            path=layer.path,
            name=layer.name or f"merge_{index}",
            type="Merge",
            args={"mode": layer.merge, "dim": layer.dim},
            in_shape=tuple(operands[0].shape),
            out_shape=out_shape,
            params=0,
            trainable=0,
            buffers=0,
            module=module,
            spec=layer,
            fqn=fqn,
            in_dtype=operands[0].dtype,
            out_dtype=dtypes.pop() if len(dtypes) == 1 else "float32",
            shape_method="rule",
        )

    def memory_layer(self, layer: LayerSpec, index: int, x: Tensor, mem: Tensor, prefix, fqn: str) -> LayerInfo:
        """CrossAttention / TransformerDecoderLayer: queries from ``x``, keys and values from ``mem``."""
        cls = nm.CrossAttention if layer.type == "CrossAttention" else nm.TransformerDecoderLayer
        for t, what in ((x, x.label or "the input"), (mem, f"memory {layer.memory!r}")):
            if t.dtype.startswith("int") or len(t.shape) != 2:
                raise layer.where.error(
                    f"{layer.type} reads sequences [L, D] of floats, and {what} gives {shape_str(t.shape)} ({t.dtype})",
                    hint="an Embedding turns token ids into a sequence [L, D]",
                )
        kwargs, inferred = self.resolve_args(layer, cls, x.shape, x.label, x.dtype)
        width = mem.shape[-1]
        keys = ("kdim", "vdim") if cls is nm.CrossAttention else ("d_model",)
        for key in keys:
            if kwargs.get(key) not in (None, width):
                raise layer.arg_where.get(key, layer.where).error(
                    f"{layer.type}: {key}={kwargs[key]}, but memory {layer.memory!r} gives "
                    f"{shape_str(mem.shape)} ({width} features)",
                    hint=f"project the memory to {kwargs[key]} features with a Linear"
                    if key == "d_model"
                    else f"leave {key} out: nncli infers it from the memory",
                )
            if kwargs.get(key) is None:
                kwargs[key] = width
                inferred = (*inferred, key)
        module = self.construct(layer, cls, kwargs, self.device if self.real else torch.device("meta"))
        self.apply_init(layer, module)
        total, trainable, buffers = self.count(module)
        name = layer.name or (f"{cls.__name__.lower()}_{index}" if prefix is None else f"{prefix}.{index}")
        return LayerInfo(
            index=index,
            path=layer.path,
            name=name,
            type=cls.__name__,
            args=kwargs,
            in_shape=tuple(x.shape),
            out_shape=tuple(x.shape),
            params=total,
            trainable=trainable,
            buffers=buffers,
            module=module,
            spec=layer,
            inferred=tuple(inferred),
            fqn=fqn,
            in_dtype=x.dtype,
            out_dtype="float32",
            shape_method="rule",
        )

    def graph_composite(self, spec, index: int, x: Tensor, env: dict, prefix, fqn: str) -> LayerInfo:
        """A Block or Repeat whose elements read named tensors: built as a graph block."""
        name = spec.name or (f"{spec.type.lower()}_{index}" if prefix is None else f"{prefix}.{index}")
        with self.scope.entered(spec.vars, spec.var_where, x.shape, spec.where):
            if isinstance(spec, BlockSpec):
                with self.scoped_init(spec):
                    part = self.graph_list(spec.layers, env, x, name, f"{fqn}.", "block")
                info = self.block_info(spec, index, x.shape, name, fqn, "Block", {})
                info.module, info.children = nm.GraphBlock(part.modules, part.steps), part.infos
                last = part.last
            else:
                info, last = self.graph_repeat(spec, index, x, env, name, fqn)
        info.out_shape, info.out_dtype, info.in_dtype = last.shape, last.dtype, x.dtype
        info.params, info.trainable, info.buffers = self.count(info.module)
        return info

    def graph_repeat(self, spec: RepeatSpec, index: int, x: Tensor, env: dict, name: str, fqn: str):
        """A Repeat of graph blocks; its ``accumulate`` names summed over the copies."""
        times = self.repeat_times(spec, x.shape)
        info = self.block_info(spec, index, x.shape, name, fqn, "Repeat", {"times": times})
        copies, sums = [], {}
        enclosing = self.repeat_factor
        self.repeat_factor = enclosing * times
        try:
            for copy in range(times):
                with self.scoped_init(spec), _copy_vars(self, spec, copy, x.shape):
                    part = self.graph_list(spec.layers, env, x, f"{name}.{copy}", f"{fqn}.{copy}.", f"copy {copy + 1}")
                copies.append(nm.GraphBlock(part.modules, part.steps))
                info.children.extend(part.infos)
                x = part.last
                for acc in spec.accumulate:
                    _accumulate(spec, sums, acc, part.env[acc])
        finally:
            self.repeat_factor = enclosing
        info.module = nm.GraphRepeat(copies, spec.accumulate)
        info.accumulated = sums
        return info, x


def _shared_shape(target: LayerInfo, x: Tensor, where: Where, name: str) -> tuple:
    """The output shape of a shared module applied to another shape (run on meta stand-ins of
    its weights); a located error where it does not take that tensor."""
    module = target.module
    ok = x.dtype.startswith("int") == target.in_dtype.startswith("int") and not isinstance(
        module, (nm.GraphBlock, nm.GraphRepeat)
    )
    if ok:
        tensors = {k: torch.empty_like(v, device="meta") for k, v in module.state_dict(keep_vars=True).items()}
        try:
            inp = torch.zeros((2, *x.shape), dtype=getattr(torch, x.dtype), device="meta")
            with torch.no_grad():
                return tuple(torch.func.functional_call(module, tensors, (inp,)).shape[1:])
        except Exception:  # torch's own refusal: the shapes say it better
            pass
    raise where.error(
        f"`share: {name}`: {name} was built for {shape_str(target.in_shape)} ({target.in_dtype}) "
        f"and does not take {shape_str(x.shape)} ({x.dtype})",
        hint="a shared module takes tensors its weights fit",
    )


def _copy_vars(builder, spec: RepeatSpec, copy: int, shape: tuple):
    """Context: one copy's ``index`` / ``each`` vars, where the builder binds them."""
    scope = getattr(builder, "copy_scope", None)
    return scope(spec, copy, shape) if scope is not None else nullcontext()


def _reads(layer: LayerSpec) -> list[tuple[str, str]]:
    from nncli.spec.graph import references

    return [(k, n) for k, n in references(layer) if k in ("from", "memory")]


def _accumulate(spec: RepeatSpec, sums: dict, name: str, t: Tensor) -> None:
    if name in sums and tuple(sums[name].shape) != tuple(t.shape):
        raise spec.where.error(
            f"Repeat: `accumulate` sums {name!r} over the copies, but one copy gives "
            f"{shape_str(sums[name].shape)} and another {shape_str(t.shape)}"
        )
    sums[name] = Tensor(t.shape, t.dtype, None, f"{spec.path} Repeat (sum of {name})", t.info)


def _check_key(layer: LayerSpec, key: str) -> None:
    """A named top-level element becomes a submodule: its name may not be a Graph attribute."""
    if hasattr(nm.Graph, key) or key in ("input_table", "input_names", "output_names", "_graph_steps"):
        raise layer.where.error(
            f"the name {key!r} is taken by torch.nn.Module itself: it cannot name a submodule",
            hint=f"e.g. name: {key}_block",
        )


def merge_shape(layer: MergeSpec, operands: list[Tensor], module: nn.Module) -> tuple:
    """The joined shape, run on meta tensors; a mismatch lists every operand's shape."""
    shown = ", ".join(f"{n} {shape_str(t.shape)}" for n, t in zip(layer.sources, operands))
    ndim = len(operands[0].shape) + 1
    if layer.merge == "concat" and (len({len(t.shape) for t in operands}) > 1 or not -ndim < layer.dim < ndim):
        raise layer.where.error(f"Merge concat along dim {layer.dim}: operands {shown} cannot be joined there")
    try:
        tensors = [torch.zeros((2, *t.shape), dtype=getattr(torch, t.dtype), device="meta") for t in operands]
        out = module(*tensors)
    except Exception:
        need = (
            f"concat along dim {layer.dim} needs equal shapes except at dim {layer.dim}"
            if layer.merge == "concat"
            else f"{layer.merge} needs shapes that broadcast"
        )
        raise layer.where.error(f"Merge: {need}; operands: {shown}") from None
    if out.shape[0] != 2:
        raise layer.where.error(f"Merge {layer.merge} would broadcast over the batch; operands: {shown}")
    return tuple(out.shape[1:])


def tie_parameter(layer: LayerSpec, info: LayerInfo, param: str, name: str, target: LayerInfo) -> None:
    """``tie: {weight: NAME}``: this layer's parameter becomes the named layer's (counted once)."""
    where = layer.graph_where.get("tie", layer.where)
    theirs = getattr(target.module, param, None)
    mine = getattr(info.module, param, None)
    if not isinstance(theirs, nn.Parameter):
        raise where.error(f"`tie: {{{param}: {name}}}`: {name} ({target.type}) has no parameter {param!r}")
    if not isinstance(mine, nn.Parameter):
        raise where.error(f"`tie`: {info.type} has no parameter {param!r} to tie")
    if tuple(theirs.shape) != tuple(mine.shape):
        raise where.error(
            f"`tie: {{{param}: {name}}}`: {name}'s {param} is {list(theirs.shape)}, this {info.type}'s is "
            f"{list(mine.shape)}: tied parameters need equal shapes",
            hint="Linear(D -> V) and Embedding(V, D) both have weight [V, D]",
        )
    setattr(info.module, param, theirs)
    info.params -= mine.numel()
    info.trainable -= mine.numel() if mine.requires_grad else 0
    info.tied[param] = name
