"""How :func:`nncli.build.infer` learns a layer's output shape without torch's meta kernels.

A layer built on the meta device allocates nothing, but the first meta *operation* pays a large
start-up: torch's Python meta kernels import sympy and, for many ops (``addmm``, BatchNorm,
``normal_``), ``torch._dynamo``, which dwarfs the actual work of a ``check`` on a small
network. So ``infer`` keeps its modules on meta (a 100-billion-parameter spec still costs
nothing) and learns shapes in this order:

1. exact shape rules for the layers whose weights can be large (``Linear``, ``ConvNd``), so
   neither their weights nor their FLOPs are ever paid;
2. a real forward on CPU zeros, with the layer's tensors materialised as zeros for the run
   (:func:`on_cpu`), when they and the batch fit in :data:`REAL_ELEMENTS` elements;
3. otherwise (a layer too big to allocate) meta tensors, as before.

A real run that raises (a :class:`~nncli.errors.SpecError`: the layer refused its input) falls
back to meta, so torch's meta kernels keep deciding bad specs and wording their errors exactly as
before; nothing else is caught. Each layer's :attr:`~nncli.build.LayerInfo.shape_method` records
which of the three answered (:data:`RULE`, :data:`CPU_ZEROS`, :data:`META`; :data:`DEVICE` in a
real build, which runs the layer where its weights are).
"""

from __future__ import annotations

from contextlib import contextmanager, nullcontext

import torch
from torch import nn
from torch.overrides import TorchFunctionMode

from nncli.build.checks import first_line, shape_str
from nncli.errors import SpecError
from nncli.spec import LayerSpec

# Largest layer (parameters + buffers, or the incoming batch) run for real: 16M elements (64 MB in
# float32), cheap to allocate next to meta's imports; anything bigger stays on meta.
REAL_ELEMENTS = 2**24

# How a layer's output shape was learnt (LayerInfo.shape_method).
RULE = "rule"
CPU_ZEROS = "cpu_zeros"
META = "meta"
DEVICE = "device"

_CONV = {nn.Conv1d: 1, nn.Conv2d: 2, nn.Conv3d: 3}
_CPU = torch.device("cpu")
_META = torch.device("meta")


def rule_shape(module: nn.Module, shape: tuple) -> tuple | None:
    """The per-example output shape by formula, or None where no exact rule applies.

    Only the happy path: anything a rule does not cover (an unbatched reading, a padding mode
    that can fail, an empty output) returns None and is run, so torch words the error.
    """
    cls = type(module)  # exact types: a subclass may change forward
    if _keeps_shape(module, shape):
        return tuple(shape)
    if cls is nn.Flatten and module.start_dim == 1 and module.end_dim == -1 and shape:
        size = 1
        for d in shape:
            size *= d
        return (size,)
    if cls is nn.Linear:
        if shape and shape[-1] == module.in_features:
            return (*shape[:-1], module.out_features)
        return None
    n = _CONV.get(cls)
    if n is None or len(shape) != n + 1 or shape[0] != module.in_channels:
        return None
    if module.padding_mode != "zeros":
        return None  # reflect/circular padding refuse pads wider than the input: let torch say so
    spatial = shape[1:]
    if module.padding == "same":
        out = tuple(spatial)
    else:
        pad = (0,) * n if module.padding == "valid" else module.padding
        out = tuple(
            (size + 2 * p - d * (k - 1) - 1) // s + 1
            for size, p, d, k, s in zip(spatial, pad, module.dilation, module.kernel_size, module.stride)
        )
    if any(d < 1 for d in out):
        return None
    return (module.out_channels, *out)


# Batch norms by the number of per-example dimensions they take (BatchNorm1d: [C] or [C, L]).
_BATCH_NORM_DIMS = {nn.BatchNorm1d: (1, 2), nn.BatchNorm2d: (3,), nn.BatchNorm3d: (4,)}


def _keeps_shape(module: nn.Module, shape: tuple) -> bool:
    """Whether ``module`` certainly gives its input's shape back: torch's elementwise activations,
    Identity, Dropout, and norms whose sizes match, with arguments that work. A DenseNet-121 ran
    121 BatchNorms and 121 ReLUs on CPU zeros for shapes these rules know (half of its ``params``
    time)."""
    cls = type(module)
    if cls in (nn.Identity, nn.Dropout, nn.AlphaDropout) or _elementwise(cls):
        smallest: tuple | None = (1,)
    elif cls in _BATCH_NORM_DIMS or cls is nn.GroupNorm:
        channels = module.num_features if cls in _BATCH_NORM_DIMS else module.num_channels
        fits = len(shape) in _BATCH_NORM_DIMS[cls] if cls in _BATCH_NORM_DIMS else len(shape) >= 1
        smallest = (channels, *(1,) * (len(shape) - 1)) if fits and shape[0] == channels else None
    elif cls is nn.LayerNorm:
        normalized = tuple(module.normalized_shape)
        fits = 0 < len(normalized) <= len(shape) and tuple(shape[-len(normalized) :]) == normalized
        smallest = (*(1,) * (len(shape) - len(normalized)), *normalized) if fits else None
    else:
        smallest = None
    return smallest is not None and _arguments_work(module, smallest)


def _elementwise(cls: type) -> bool:
    """torch's elementwise activations (ReLU, Tanh, ...): any shape to itself."""
    return cls.__module__ == "torch.nn.modules.activation" and cls.__name__ not in _NOT_ELEMENTWISE


# (class, arguments, smallest input) -> whether the layer runs: a shape rule answers only for
# arguments torch accepts. Some are refused only by forward (GELU's `approximate: foo`, an ELU's
# `alpha: abc`, BatchNorm's `eps: abc`), so each set of arguments is run once, on the smallest
# input of its kind, and a refusal is left to the full run, whose error names the layer.
_ARGUMENTS_WORK: dict[tuple, bool] = {}


def _arguments_work(module: nn.Module, smallest: tuple) -> bool:
    key = (type(module), module.extra_repr(), smallest)
    works = _ARGUMENTS_WORK.get(key)
    if works is None:
        if not fits_on_cpu(module, smallest, INFER_BATCH):
            return False
        on_meta = any(t.device.type == "meta" for t in (*module.parameters(), *module.buffers()))
        training = module.training
        try:
            with on_cpu(module) if on_meta else nullcontext(), torch.no_grad():
                y = module.eval()(torch.zeros((INFER_BATCH, *smallest)))
            works = tuple(y.shape) == (INFER_BATCH, *smallest)
        except (TypeError, ValueError, RuntimeError):  # how torch's layers refuse an argument
            works = False
        finally:
            module.train(training)
        _ARGUMENTS_WORK[key] = works
    return works


def fits_on_cpu(module: nn.Module, shape: tuple, batch: int) -> bool:
    """Whether a real run of ``module`` on ``batch`` examples of ``shape`` is cheap to allocate."""
    tensors = sum(t.numel() for t in module.parameters()) + sum(b.numel() for b in module.buffers())
    incoming = batch
    for d in shape:
        incoming *= d
    return tensors <= REAL_ELEMENTS and incoming <= REAL_ELEMENTS


@contextmanager
def on_cpu(module: nn.Module):
    """Context: the meta ``module``'s parameters and buffers become CPU zeros, then meta again.

    Zeros rather than uninitialised memory, so a layer that looks at values (a Custom layer's
    assert) sees the same thing every run.
    """
    # Not ``module.to_empty``: its ``empty_like`` on a meta tensor goes through torch's Python
    # references, whose first use imports sympy and symbolic shapes (every `params` would pay it).
    module._apply(lambda t: torch.zeros(t.shape, dtype=t.dtype))
    try:
        yield
    finally:
        module._apply(lambda t: torch.empty(t.shape, dtype=t.dtype, device=_META))


def tensors_device(shapes: list[tuple], batch: int) -> torch.device:
    """Where to make zeros of these per-example shapes for a shape check: CPU if they fit, else meta."""
    elements = 0
    for shape in shapes:
        n = batch
        for d in shape:
            n *= d
        elements += n
    return _CPU if elements <= REAL_ELEMENTS else _META


# In-place ops that only write values (what weight init does): on a meta tensor they have nothing
# to write, and some (``normal_``) import torch._dynamo on first use.
_VALUE_WRITES = frozenset(
    {
        "normal_",
        "uniform_",
        "zero_",
        "fill_",
        "copy_",
        "exponential_",
        "bernoulli_",
        "random_",
        "log_normal_",
        "cauchy_",
        "geometric_",
        "erfinv_",
        "mul_",
        "div_",
        "add_",
        "sub_",
        "clamp_",
        "clamp_min_",
        "clamp_max_",
        "addcmul_",
        "addcdiv_",
        "sqrt_",
        "neg_",
        "abs_",
        "sign_",
        "fmod_",
        "remainder_",
        "exp_",
        "log_",
        "tanh_",
        "sigmoid_",
        "masked_fill_",
        "index_fill_",
        # torch.nn.init's schemes, skipped whole rather than op by op inside them
        "kaiming_uniform_",
        "kaiming_normal_",
        "xavier_uniform_",
        "xavier_normal_",
        "trunc_normal_",
        "orthogonal_",
        "sparse_",
        "constant_",
        "ones_",
        "zeros_",
        "eye_",
        "dirac_",
    }
)


class _SkipValueWrites(TorchFunctionMode):
    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        if getattr(func, "__name__", "") in _VALUE_WRITES:
            # a Tensor method gets the tensor first; torch.nn.init's functions pass it as `tensor=`
            target = args[0] if args else kwargs.get("tensor")
            if isinstance(target, torch.Tensor) and target.device.type == "meta":
                return target
        return func(*args, **kwargs)


def skipped_init():
    """Context: constructing on meta writes no initial values (there are none to write).

    Initialising meta weights is pure overhead that grows with depth, and an Embedding's or an
    RNN's init (``normal_``) imports torch._dynamo. Shapes, dtypes and ``requires_grad`` are untouched.
    """
    return _SkipValueWrites()


def init_stand_in(tensor: torch.Tensor) -> torch.Tensor:
    """A CPU tensor of ``tensor``'s shape to run an init scheme on, when ``tensor`` is meta and fits.

    A meta tensor has no values to initialise, but the scheme must still be checked (a fan-in
    of a 1-d tensor, a bad keyword); running it on meta imports ``torch._dynamo`` (``normal_``).
    """
    if tensor.device.type == "meta" and tensor.numel() <= REAL_ELEMENTS:
        return torch.empty(tensor.shape, dtype=tensor.dtype)
    return tensor


# Shape inference pushes this many examples through each layer: 2, not 1, because BatchNorm in
# train mode refuses a batch of one example per channel.
INFER_BATCH = 2


class ShapeRunner:
    """The builder's part that learns a layer's output shape by running it (or by a rule)."""

    def forward_shape(
        self, spec: LayerSpec, type_name: str, module: nn.Module, shape: tuple, prev_label: str | None
    ) -> tuple:
        """The layer's per-example output shape; ``self.shape_method`` says how it was learnt."""
        if any(nn.parameter.is_lazy(t) for t in module.parameters()):
            # counting, initialising and sharding all need every parameter's size up front
            raise spec.where.error(
                f"{type_name} holds lazy parameters (a LazyLinear or LazyConv), whose sizes are unknown until it runs",
                hint="build them with their sizes (nn.Linear(in_features, out_features))",
            )
        self.shape_method = DEVICE if self.real else META
        if not self.real and self._run_device.type == "meta":
            # `infer`: a shape rule, or a real run on CPU zeros, rather than meta ops, whose first
            # use imports torch's symbolic-shape machinery (nncli.build.inference). Meta for
            # layers too big to run.
            ruled = rule_shape(module, shape) if self._x_dtype is None else None
            if ruled is not None:
                self.shape_method = RULE
                return ruled
            if fits_on_cpu(module, shape, INFER_BATCH + 1):
                self._run_device = torch.device("cpu")
                try:
                    with on_cpu(module):
                        out = self._two_batches(spec, type_name, module, shape, prev_label)
                    self.shape_method = CPU_ZEROS
                    return out
                except SpecError:
                    pass  # torch's meta kernels decide, and word the error, as before
                finally:
                    self._run_device = torch.device("meta")
            self.shape_method = META
        return self._two_batches(spec, type_name, module, shape, prev_label)

    def _two_batches(
        self, spec: LayerSpec, type_name: str, module: nn.Module, shape: tuple, prev_label: str | None
    ) -> tuple:
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
                hint=f"{type_name} probably needs one more dimension per example than {list(shape)}",
            )
        return first

    def _forward_batch(
        self,
        spec: LayerSpec,
        type_name: str,
        module: nn.Module,
        shape: tuple,
        prev_label: str | None,
        batch: int,
        device: torch.device | None = None,
    ) -> tuple:
        # Eval mode: the same shapes, and BatchNorm's meta kernel skips the running-stat update
        # (a large share of a BatchNorm-heavy network's inference).
        training = module.training
        if device is None:
            device = self.device if self.real else self._run_device
        try:
            with torch.no_grad():
                # may overflow int64 sizes; token ids of 0 are valid for any vocabulary
                x = torch.zeros((batch, *shape), device=device, dtype=self._x_dtype)
                y = module.eval()(x)
        except Exception as exc:
            came_from = prev_label or "the input"
            raise spec.where.error(
                f"{type_name} cannot take the shape {shape_str(shape)} that {came_from} gives: {first_line(exc)}"
            ) from None
        finally:
            module.train(training)
        if not isinstance(y, torch.Tensor):
            raise spec.where.error(
                f"{type_name} returns {type(y).__name__}, not a tensor; a spec is a "
                "sequence of layers with one tensor in and one out",
                hint="wrap it in a Custom layer that returns one tensor",
            )
        if y.dtype not in (x.dtype, torch.float32):
            # the next layer's weights are float32: a float64 or float16 output fails there
            raise spec.where.error(
                f"{type_name} returns {str(y.dtype).removeprefix('torch.')} from {str(x.dtype).removeprefix('torch.')} "
                "input; every layer of a spec computes in float32",
                hint="return a float32 tensor (for example `return out.float()`)",
            )
        if y.dim() == 0 or y.shape[0] != batch:
            raise spec.where.error(
                f"{type_name} does not keep the batch dimension: [N={batch}, ...] in, {list(y.shape)} out"
            )
        if any(d == 0 for d in y.shape[1:]):
            raise spec.where.error(
                f"{type_name} turns {shape_str(shape)} into the empty shape {shape_str(tuple(y.shape[1:]))}",
                hint="the input is too small for this kernel/stride/padding",
            )
        return tuple(y.shape[1:])


# Layers that always read dim 0 as the batch (no unbatched form): one meta pass is enough.
_BATCH_FIRST = {
    "Linear",
    "Identity",
    "Flatten",
    "BatchNorm1d",
    "BatchNorm2d",
    "BatchNorm3d",
    "LayerNorm",
    "RMSNorm",
    "GroupNorm",
    "Dropout",
    "AlphaDropout",
    "Step",
}
_NOT_ELEMENTWISE = {"Softmax", "Softmin", "LogSoftmax", "Softmax2d", "GLU", "MultiheadAttention", "PReLU"}


def _keeps_batch(module: nn.Module) -> bool:
    cls = type(module)
    if cls.__name__ in _BATCH_FIRST:
        return True
    return _elementwise(cls)
