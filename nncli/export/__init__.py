"""``nncli export``: a trained run (its best checkpoint) or a spec (its initial weights) written
as ONNX, TorchScript or safetensors, and each file checked after it is written.

- ONNX through torch's TorchScript-based exporter (``dynamo=False``: it needs no onnxscript and
  works offline), with a dynamic batch dimension; the file is run in onnxruntime on a batch of
  another size than the one traced and compared with the torch model.
- TorchScript by tracing (default) or scripting; the file is loaded back and compared the same way.
- safetensors: the weights, with the spec text (and the run's normalisation and class names) in
  the file's metadata; :func:`load_safetensors` rebuilds the network from that file alone.

Rooms: ``source`` (the model to export), ``verify`` (the check on a batch), ``onnx_file``,
``torchscript_file``, ``safetensors_file`` and ``formats`` (:func:`export_model` and its result).
onnx, onnxruntime and safetensors are the optional extra ``nncli[export]``; their absence is
a clear exit 2 naming it.
"""

from nncli.export.formats import FORMATS, ExportResult, export_model
from nncli.export.safetensors_file import load_safetensors

__all__ = ["FORMATS", "ExportResult", "export_model", "load_safetensors"]
