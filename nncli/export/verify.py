"""The check after an export: the exported model and the torch model on the same batch."""

from __future__ import annotations

from contextlib import contextmanager

# Inputs are traced with TRACE_BATCH examples and checked with CHECK_BATCH: a file whose batch
# dimension was frozen at trace time fails the check instead of passing it by luck.
TRACE_BATCH = 2
CHECK_BATCH = 3
# float32 outputs agree to this, relative to the largest output magnitude (at least 1)
TOLERANCE = 1e-5


def sample_inputs(built, batch: int, seed: int = 0):
    """A seeded batch the network accepts: standard normal floats, or token ids in range."""
    import torch

    gen = torch.Generator().manual_seed(seed)
    if getattr(built, "inputs", ()):  # a Graph spec: a tuple, one batch per input
        from nncli.build.inputs import random_inputs

        return random_inputs(built.inputs, batch, generator=gen)
    shape = (batch, *built.input_shape)
    if getattr(built, "input_dtype", "float32") in ("int64", "int32"):
        high = built.input_high or 2
        dtype = torch.int64 if built.input_dtype == "int64" else torch.int32
        return torch.randint(0, high, shape, generator=gen).to(dtype)
    return torch.randn(shape, generator=gen)


def max_difference(expected, found) -> dict:
    """``{"max_abs_diff", "scale", "passed"}``: the largest absolute difference, and whether it is
    within :data:`TOLERANCE` times ``max(1, max |expected|)``."""
    import numpy as np

    expected = np.asarray(expected, dtype=np.float64)
    found = np.asarray(found, dtype=np.float64)
    if expected.shape != found.shape:
        return {
            "max_abs_diff": None,
            "scale": None,
            "tolerance": TOLERANCE,
            "passed": False,
            "problem": f"output shape {list(found.shape)}, expected {list(expected.shape)}",
        }
    diff = float(np.max(np.abs(expected - found))) if expected.size else 0.0
    scale = max(1.0, float(np.max(np.abs(expected))) if expected.size else 1.0)
    return {
        "max_abs_diff": diff,
        "scale": scale,
        "tolerance": TOLERANCE,
        "passed": bool(np.isfinite(diff) and diff <= TOLERANCE * scale),
    }


def first_failing_layer(model, x, attempt) -> str | None:
    """The innermost layer that ``attempt(layer, its_input)`` raises on, found on the inputs each
    layer really gets (recorded by a forward pass): ``layers[2] (Repeat) > 0.0.body.1
    (SelfAttention): why``; None if every layer exports alone."""
    import torch

    names = {module: name for name, module in model.named_modules() if name}
    calls: list = []  # (name, module, input) in the order the forward pass reaches them

    def record(module, args):
        if len(args) == 1 and isinstance(args[0], torch.Tensor) and all(c[1] is not module for c in calls):
            calls.append((names[module], module, args[0]))

    handles = [module.register_forward_pre_hook(record) for module in names]
    try:
        with torch.no_grad():
            model(*x) if isinstance(x, tuple) else model(x)
    finally:
        for handle in handles:
            handle.remove()

    def fails(module, xi):
        try:
            with torch.no_grad(), quiet_stderr():
                attempt(module, xi)
        except Exception as exc:  # the exporter's own errors are of many types
            return (str(exc).strip().splitlines() or [type(exc).__name__])[0][:200]
        return None

    found = None
    scope = [c for c in calls if "." not in c[0]]  # the top-level layers first
    while scope:
        for name, module, xi in scope:
            why = fails(module, xi)
            if why is not None:
                found = (name, module, why)
                break
        else:
            break
        # a container fails when a layer inside it does: look inside for the one that fails
        scope = [c for c in calls if c[0].startswith(found[0] + ".")]
    if found is None:
        return None
    name, module, why = found
    top, _, rest = name.partition(".")
    label = f"layers[{top}]" if top.isdigit() else top  # a Graph's named element: its name
    where = f"{label} ({type(model.get_submodule(top)).__name__})"
    if rest:
        where += f" > {rest} ({type(module).__name__})"
    return f"{where}: {why}"


@contextmanager
def quiet_stderr():
    """Silence what torch's C++ side writes to the process's stdout and stderr while an export
    attempt fails (a dump of its IR): nncli's own error message says what went wrong, and
    ``--json`` promises nothing else on stdout."""
    import os
    import sys

    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (AttributeError, OSError, ValueError):
            pass
    saved = {}
    try:
        with open(os.devnull, "w") as null:
            for fd in (1, 2):
                try:
                    saved[fd] = os.dup(fd)
                    os.dup2(null.fileno(), fd)
                except OSError:  # no such descriptor (an embedding process): nothing to silence
                    pass
            yield
    finally:
        for fd, copy in saved.items():
            os.dup2(copy, fd)
            os.close(copy)


def compare_on_batch(model, built, run_exported, runtime: str) -> dict:
    """The torch model and ``run_exported(x) -> array`` on a seeded batch of :data:`CHECK_BATCH`;
    an exported model that fails to run there (a batch size frozen at trace time) fails the check."""
    import torch

    x = sample_inputs(built, CHECK_BATCH, seed=1)
    with torch.no_grad():
        expected = model(*x) if isinstance(x, tuple) else model(x)
    expected = [e.float().numpy() for e in expected] if isinstance(expected, tuple) else expected.float().numpy()
    try:
        found = run_exported(x)
        if isinstance(expected, list):  # several outputs: compared as one array, output after output
            import numpy as np

            expected = np.concatenate([e.ravel() for e in expected])
            found = np.concatenate([np.asarray(f).ravel() for f in found])
    except Exception as exc:  # onnxruntime / TorchScript runtime errors
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:200]
        check = {
            "max_abs_diff": None,
            "scale": None,
            "tolerance": TOLERANCE,
            "passed": False,
            "problem": f"it fails on a batch of {CHECK_BATCH}: {first}",
        }
    else:
        check = max_difference(expected, found)
    check.update(batch=CHECK_BATCH, runtime=runtime)
    return check
