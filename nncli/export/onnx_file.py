"""ONNX export with a dynamic batch dimension, checked in onnxruntime against torch."""

from __future__ import annotations

import io
import warnings
from pathlib import Path

from nncli.errors import InputError
from nncli.export.source import file_metadata
from nncli.export.verify import TRACE_BATCH, compare_on_batch, first_failing_layer, quiet_stderr, sample_inputs

OPSET = 17  # onnxruntime >= 1.13 runs it; the exporter's default of torch 2.x


def _export(model, x, target, dynamic: bool = True) -> None:
    import torch

    kwargs = {"dynamic_axes": {"input": {0: "batch"}, "output": {0: "batch"}}} if dynamic else {}
    with warnings.catch_warnings():
        # the TorchScript-based exporter is deprecated in favour of the dynamo one, which needs
        # onnxscript; this one needs nothing more and gives the same graph for nn.Sequential
        warnings.simplefilter("ignore")
        torch.onnx.export(
            model,
            (x,),
            target,
            dynamo=False,
            opset_version=OPSET,
            input_names=["input"],
            output_names=["output"],
            do_constant_folding=True,
            **kwargs,
        )


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
            _export(model, x, buffer)
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
    name = session.get_inputs()[0].name
    check = compare_on_batch(
        model, built, lambda x: session.run(None, {name: x.numpy()})[0], f"onnxruntime {onnxruntime.__version__}"
    )
    return {"method": f"torch.onnx (TorchScript exporter), opset {OPSET}, dynamic batch", "check": check}
