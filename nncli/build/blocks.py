"""The builder's blocks: ``Residual``, ``Repeat`` (with an expression-valued ``times``),
``Parallel`` and ``Block``, plus an ``Embedding``'s vocabulary, as a mixin of the builder in
:mod:`nncli.build`.

Shapes flow through the same ``sequence`` as every other layer; a Parallel's merge shape comes
from :func:`nncli.build.checks.merge_shape`, which runs on whatever device the build uses.
"""

from __future__ import annotations

from contextlib import contextmanager

import torch
from torch import nn

from nncli import modules as nm
from nncli.build import checks
from nncli.build.inference import tensors_device
from nncli.spec import BlockSpec, LayerSpec, ParallelSpec, RepeatSpec, ResidualSpec


class GraphBlocks:
    """Mixin for the builder: needs its ``sequence``, ``scoped_init``, ``scope``, ``spec``,
    ``device``/``real``, ``block_info`` and ``count``.
    """

    def residual(
        self,
        spec: ResidualSpec,
        index: int,
        shape: tuple,
        name: str,
        fqn: str,
        prev_label: str | None = None,
        dtype: str = "float32",
    ):
        info = self.block_info(spec, index, shape, name, fqn, "Residual", {})
        # Both branches receive what the layer before the Residual gives.
        with self.scoped_init(spec):
            body, body_shape = self.sequence(
                spec.body, shape, f"{name}.body", "body", prev_label, fqn=f"{fqn}.body.", dtype=dtype
            )
            shortcut, short_shape = self.sequence(
                spec.shortcut, shape, f"{name}.shortcut", "shortcut", prev_label, fqn=f"{fqn}.shortcut.", dtype=dtype
            )
        if body_shape != short_shape:
            what = "its shortcut" if spec.shortcut else "the identity shortcut"
            raise spec.where.error(
                f"Residual: the body gives {checks.shape_str(body_shape)} but {what} gives "
                f"{checks.shape_str(short_shape)}; body(x) + shortcut(x) needs equal shapes",
                hint=projection_hint(shape, body_shape)
                if not spec.shortcut
                else "make the shortcut end in the body's shape",
            )
        body_mod = nn.Sequential(*[c.module for c in body])
        short_mod = nn.Sequential(*[c.module for c in shortcut]) if shortcut else nn.Identity()
        info.module = nm.Residual(body_mod, short_mod)
        info.children = body + shortcut
        info.out_shape = body_shape
        info.out_dtype = out_dtype(body, dtype)
        info.params, info.trainable, info.buffers = self.count(info.module)
        return info

    def repeat(
        self,
        spec: RepeatSpec,
        index: int,
        shape: tuple,
        name: str,
        fqn: str,
        prev_label: str | None = None,
        dtype: str = "float32",
    ):
        times = self.repeat_times(spec, shape)
        info = self.block_info(spec, index, shape, name, fqn, "Repeat", {"times": times})
        copies = []
        enclosing = self.repeat_factor
        self.repeat_factor = enclosing * times  # what one layer inside stands for in the whole model
        try:
            for copy in range(times):
                with self.scoped_init(spec), self.copy_scope(spec, copy, shape):
                    layers, shape = self.sequence(
                        spec.layers,
                        shape,
                        f"{name}.{copy}",
                        f"copy {copy + 1}",
                        prev_label,
                        fqn=f"{fqn}.{copy}.",
                        dtype=dtype,
                    )
                prev_label = f"{layers[-1].path} {layers[-1].type} (copy {copy + 1})"
                dtype = layers[-1].out_dtype
                copies.append(layers)
                info.children.extend(layers)
        finally:
            self.repeat_factor = enclosing
        info.module = nm.Repeat(*[nn.Sequential(*[c.module for c in layers]) for layers in copies])
        info.out_shape = shape
        info.out_dtype = dtype
        info.params, info.trainable, info.buffers = self.count(info.module)
        return info

    @contextmanager
    def copy_scope(self, spec: RepeatSpec, copy: int, shape: tuple):
        """Context: one copy's names, its ``index`` then its ``each`` entry's vars, evaluated
        against the copy's incoming ``shape``."""
        index = {spec.index: copy} if getattr(spec, "index", None) else {}
        each = spec.each[copy] if getattr(spec, "each", None) else None
        where = spec.each_where[copy] if each is not None else {}
        with self.scope.bound(index), self.scope.entered(each, where, shape, spec.where):
            yield

    def repeat_times(self, spec: RepeatSpec, shape: tuple) -> int:
        """``times``, evaluated when written as an expression; the copies of this and every enclosing
        Repeat together are bounded by the layer limit before any is built."""
        from nncli.spec.limits import check_copies

        where = spec.arg_where.get("times", spec.where)
        if isinstance(spec.times, int):
            times = spec.times
        else:
            times = self.scope.number(spec.times, where, shape, what="Repeat: `times`", integer=True)
            if times < 1:
                raise where.error(f"Repeat: expected `times` to be an integer >= 1, found {spec.times!r} = {times}")
        # Every Repeat, literal or not: an expression `times` nested inside others multiplies them,
        # which the spec-level count (it sees an expression as 1) cannot know.
        check_copies(times, spec.layers, where, enclosing=self.repeat_factor)
        return times

    def parallel(
        self,
        spec: ParallelSpec,
        index: int,
        shape: tuple,
        name: str,
        fqn: str,
        prev_label: str | None = None,
        dtype: str = "float32",
    ):
        info = self.block_info(
            spec,
            index,
            shape,
            name,
            fqn,
            "Parallel",
            {"merge": spec.merge, "dim": spec.dim, "branches": len(spec.branches)},
        )
        modules, shapes, dtypes = [], [], []
        with self.scoped_init(spec):
            for b, branch in enumerate(spec.branches):  # each branch gets the Parallel's input
                layers, out = self.sequence(
                    branch,
                    shape,
                    f"{name}.branches.{b}",
                    f"branch {b}",
                    prev_label,
                    fqn=f"{fqn}.branches.{b}.",
                    dtype=dtype,
                )
                modules.append(nn.Sequential(*[c.module for c in layers]))
                shapes.append(out)
                dtypes.append(out_dtype(layers, dtype))
                info.children.extend(layers)
        device = self.device if self.real else tensors_device(shapes, 2)  # CPU zeros where they fit
        info.out_shape = checks.merge_shape(spec, shapes, [getattr(torch, d) for d in dtypes], device)
        info.out_dtype = dtypes[0] if len(set(dtypes)) == 1 else "float32"
        info.module = nm.Parallel(modules, spec.merge, spec.dim)
        info.params, info.trainable, info.buffers = self.count(info.module)
        return info

    def block(
        self,
        spec: BlockSpec,
        index: int,
        shape: tuple,
        name: str,
        fqn: str,
        prev_label: str | None = None,
        dtype: str = "float32",
    ):
        info = self.block_info(spec, index, shape, name, fqn, "Block", {})
        with self.scoped_init(spec):
            layers, info.out_shape = self.sequence(
                spec.layers, shape, name, "block", prev_label, fqn=f"{fqn}.", dtype=dtype
            )
        info.children = layers
        info.out_dtype = out_dtype(layers, dtype)
        info.module = nm.Block(*[c.module for c in layers])
        info.params, info.trainable, info.buffers = self.count(info.module)
        return info

    def token_vocabulary(
        self, spec: LayerSpec, type_name: str, kwargs: dict, dtype: str, prev_label: str | None
    ) -> None:
        """An Embedding's ``num_embeddings``: the input's ``high`` when left out; never below it."""
        # the high of the tensor it reads (a Graph spec's inputs each have their own)
        high = getattr(self, "tensor_high", self.spec.input_high) if dtype.startswith("int") else None
        if "num_embeddings" not in kwargs:
            if high is None:
                raise spec.where.error(
                    f"{type_name} needs `num_embeddings`: {prev_label or 'the input'} does not give token ids",
                    hint="declare token inputs as input: {shape: [L], dtype: int64, high: V}, or give num_embeddings",
                )
            kwargs["num_embeddings"] = high
        elif high is not None and kwargs["num_embeddings"] < high:
            raise spec.arg_where.get("num_embeddings", spec.where).error(
                f"{type_name}: num_embeddings={kwargs['num_embeddings']}, but the input's tokens go up to "
                f"{high - 1} (high: {high})",
                hint="leave num_embeddings out: nncli takes it from `high`",
            )


def projection_hint(shape: tuple, out: tuple) -> str:
    if len(shape) >= 2 and len(out) == len(shape):
        stride = shape[1] // out[1] if out[1] and shape[1] % out[1] == 0 else 1
        return (
            f"add a projection shortcut: shortcut: [{{Conv2d: {{out_channels: {out[0]}, kernel_size: 1, "
            f"stride: {stride}, bias: false}}}}, BatchNorm2d]"
            if len(shape) == 3
            else f"add a projection shortcut: shortcut: [{{Conv1d: {{out_channels: {out[0]}, kernel_size: 1, "
            f"stride: {stride}}}}}]"
        )
    return f"add a projection shortcut: shortcut: [{{Linear: {{out_features: {out[-1]}}}}}]"


def out_dtype(layers: list, dtype: str) -> str:
    """The dtype a layer list gives: its last layer's, or ``dtype`` for an empty (identity) list."""
    return layers[-1].out_dtype if layers else dtype
