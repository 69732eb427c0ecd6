"""ONNX export with a dynamic batch dimension, checked in onnxruntime against torch."""

from __future__ import annotations

import io
import warnings
from contextlib import contextmanager
from pathlib import Path

from nncli.errors import InputError
from nncli.export.source import file_metadata
from nncli.export.verify import TRACE_BATCH, compare_on_batch, first_failing_layer, quiet_stderr, sample_inputs

OPSET = 17  # onnxruntime >= 1.13 runs it; the exporter's default of torch 2.x


def _export(model, x, target, dynamic: bool = True, names: tuple = (("input",), ("output",))) -> None:
    import torch

    inputs, outputs = names
    kwargs = {"dynamic_axes": {n: {0: "batch"} for n in [*inputs, *outputs]}} if dynamic else {}
    fastpath = torch.backends.mha.get_fastpath_enabled()
    with warnings.catch_warnings(), _restored_fastpath(fastpath):
        # the TorchScript-based exporter is deprecated in favour of the dynamo one, which needs
        # onnxscript; this one needs nothing more and gives the same graph for nn.Sequential
        warnings.simplefilter("ignore")
        # eval-mode Transformer layers take a fused kernel that has no ONNX operator; the plain
        # path computes the same function from ops that export
        torch.backends.mha.set_fastpath_enabled(False)
        torch.onnx.export(
            model,
            x if isinstance(x, tuple) else (x,),
            target,
            dynamo=False,
            opset_version=OPSET,
            input_names=list(inputs),
            output_names=list(outputs),
            do_constant_folding=True,
            **kwargs,
        )


@contextmanager
def _restored_fastpath(enabled: bool):
    import torch

    try:
        yield
    finally:
        torch.backends.mha.set_fastpath_enabled(enabled)


def io_names(built) -> tuple[list[str], list[str]]:
    """The file's input and output names: a Graph spec's own, else ``input`` and ``output``."""
    if not getattr(built, "inputs", ()):
        return ["input"], ["output"]
    return [row[0] for row in built.inputs], [row[0] for row in built.outputs]


def export_onnx(source, out: Path) -> dict:
    """Write ``source.model`` to ``out`` and run it in onnxruntime.

    Returns:
        ``{"method", "check"}``: how it was written, and the comparison on a batch of
        :data:`CHECK_BATCH` examples (the file was traced with :data:`TRACE_BATCH`).

    Raises:
        InputError: the exporter cannot express a layer (named, exit 2).
    """
    import onnx
    import onnxruntime
    import torch

    model, built = source.model, source.built
    x = sample_inputs(built, TRACE_BATCH)
    buffer = io.BytesIO()
    try:
        with torch.no_grad(), quiet_stderr():
            _export(model, x, buffer, names=io_names(built))
    except Exception as exc:
        where = first_failing_layer(built.model, x, lambda layer, xi: _export(layer, xi, io.BytesIO(), dynamic=False))
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:200]
        raise InputError(
            f"ONNX export cannot express {where or 'this network'}" + ("" if where else f": {first}"),
            hint="export it as torchscript or safetensors instead",
        ) from None
    proto = onnx.load_from_string(buffer.getvalue())
    for key, value in file_metadata(source).items():
        entry = proto.metadata_props.add()
        entry.key, entry.value = key, value
    onnx.checker.check_model(proto)
    data = proto.SerializeToString()
    from nncli.files import write_atomic

    write_atomic(out, data, durable=True)
    session = onnxruntime.InferenceSession(str(out), providers=["CPUExecutionProvider"])
    names = [i.name for i in session.get_inputs()]

    def run(x):
        outs = session.run(None, {n: t.numpy() for n, t in zip(names, x if isinstance(x, tuple) else (x,))})
        return outs if len(outs) > 1 else outs[0]

    check = compare_on_batch(model, built, run, f"onnxruntime {onnxruntime.__version__}")
    return {"method": f"torch.onnx (TorchScript exporter), opset {OPSET}, dynamic batch", "check": check}
