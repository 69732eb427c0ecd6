"""TorchScript export by tracing or scripting; the file is loaded back and compared with torch."""

from __future__ import annotations

import io
import warnings
from pathlib import Path

from nncli.errors import InputError
from nncli.export.source import file_metadata
from nncli.export.verify import TRACE_BATCH, compare_on_batch, first_failing_layer, quiet_stderr, sample_inputs

METHODS = ("trace", "script")


def _script(model, x, method: str):
    import torch

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # TracerWarnings about Python values: the check below judges
        if method == "script":
            from nncli.modules.preprocess import OneInputTrained, TrainedNetwork

            if isinstance(model, TrainedNetwork) and not isinstance(x, tuple):
                model = OneInputTrained(model)
            return torch.jit.script(model)
        return torch.jit.trace(model, x if isinstance(x, tuple) else (x,), check_trace=False)


def export_torchscript(source, out: Path, method: str = "trace") -> dict:
    """Write ``source.model`` as TorchScript (``method``: trace or script), load it back, compare.

    Raises:
        InputError: an unknown method, or a layer TorchScript cannot compile (named, exit 2).
    """
    import torch

    if method not in METHODS:
        raise InputError(f"expected trace or script, found {method!r}", param="method")
    model, built = source.model, source.built
    x = sample_inputs(built, TRACE_BATCH)
    try:
        with torch.no_grad(), quiet_stderr():
            scripted = _script(model, x, method)
    except Exception as exc:
        where = first_failing_layer(built.model, x, lambda layer, xi: _script(layer, xi, method))
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:200]
        raise InputError(
            f"TorchScript ({method}) cannot compile {where or 'this network'}" + ("" if where else f": {first}"),
            hint="try the trace method" if method == "script" else "try the script method",
        ) from None
    buffer = io.BytesIO()
    extra = file_metadata(source)
    torch.jit.save(scripted, buffer, _extra_files=extra)
    from nncli.files import write_atomic

    write_atomic(out, buffer.getvalue(), durable=True)
    loaded = torch.jit.load(str(out), map_location="cpu")
    loaded.eval()

    def run_loaded(x):
        with torch.no_grad():
            out = loaded(*x) if isinstance(x, tuple) else loaded(x)
            return [o.float().numpy() for o in out] if isinstance(out, tuple) else out.float().numpy()

    check = compare_on_batch(model, built, run_loaded, f"torch.jit.load (torch {torch.__version__})")
    return {"method": f"torch.jit.{method}", "check": check}
