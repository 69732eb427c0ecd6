"""What ``nncli gradcheck`` found: verdicts, per tensor / layer / model results (their ``to_json``
is the documented ``--json`` schema), the detection bound, and the one-sentence diagnosis that
names the suspect layer. No torch.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from nncli.gradcheck.options import DEFAULT_DIRECTIONS, DEFAULT_RTOL
from nncli.status import GradcheckVerdict

if TYPE_CHECKING:
    from nncli.build import Built
    from nncli.gradcheck.numeric import _Settings


Verdict = GradcheckVerdict  # a tensor's, a layer's or the model's outcome


def miss_probability(rel_error: float, rtol: float = DEFAULT_RTOL, directions: int = DEFAULT_DIRECTIONS) -> float:
    """Probability that ``directions`` random directions all miss a gradient error.

    An error ``e`` with ``|e| = rel_error * |g|`` is missed by one Gaussian direction ``v`` when
    ``|<e, v>| <= rtol |g|``; ``<e, v> ~ N(0, |e|^2)``, so that happens with probability
    ``erf(rtol / (rel_error sqrt 2))``, independently per direction (atol ignored).

    Example:
        >>> round(miss_probability(1e-3), 9)   # 0.1% error, defaults rtol 1e-5, 3 directions
        5.08e-07
    """
    if rel_error <= 0:
        return 1.0
    return math.erf(rtol / (rel_error * math.sqrt(2.0))) ** directions


@dataclass
class TensorCheck:
    """One checked tensor (a parameter or a layer's input) of one layer."""

    name: str  # "weight", "bias", "input"; end to end: "input + parameters" or "0.weight"
    numel: int
    verdict: Verdict
    # max |<g,v> - D| / |g| over conclusive directions; None when |g| <= atol (a gradient that is
    # zero but for round-off, e.g. a bias before BatchNorm: judged on the absolute error) or none
    max_rel_error: float | None
    max_abs_error: float | None
    grad_norm: float
    checked: int  # conclusive directions (or coordinates, exhaustive)
    kinks: int = 0  # directions (coordinates) that hit a kink
    note: str | None = None

    def to_json(self) -> dict:
        return {
            "name": self.name,
            "numel": self.numel,
            "max_rel_error": self.max_rel_error,
            "max_abs_error": self.max_abs_error,
            "grad_norm": self.grad_norm,
            "verdict": self.verdict.value,
            "checked": self.checked,
            "kinks": self.kinks,
            "note": self.note,
        }


@dataclass
class StructuralCheck:
    """A cheap property every correct backward has (run on Custom layers)."""

    name: str  # "backward twice", "zero upstream", "linear in upstream"
    ok: bool
    detail: str

    def to_json(self) -> dict:
        return {"name": self.name, "ok": self.ok, "detail": self.detail}


@dataclass
class LayerCheck:
    """One layer's outcome; a Residual/Repeat aggregates its children."""

    index: int | None  # top-level position (None for the end-to-end check)
    id: str  # the module's name in the model: "3", "3.body.0"; "model" end to end
    path: str  # "layers[3].Residual.body[0]"
    name: str
    type: str
    depth: int
    verdict: Verdict
    tensors: list[TensorCheck] = field(default_factory=list)
    structural: list[StructuralCheck] = field(default_factory=list)
    children: list[LayerCheck] = field(default_factory=list)
    note: str | None = None

    def walk(self) -> Iterator[LayerCheck]:
        yield self
        for child in self.children:
            yield from child.walk()

    def to_json(self) -> dict:
        return {
            "index": self.index,
            "id": self.id,
            "path": self.path,
            "name": self.name,
            "type": self.type,
            "depth": self.depth,
            "verdict": self.verdict.value,
            "tensors": [t.to_json() for t in self.tensors],
            "structural": [s.to_json() for s in self.structural],
            "children": [c.to_json() for c in self.children],
            "note": self.note,
        }


@dataclass
class InputCheck:
    """One input of the model, end to end: whether it was perturbed, and its verdict when it was
    checked on its own (a spec with several inputs, or ``--exhaustive``)."""

    name: str  # the spec's input name ("input" for `input:`)
    shape: tuple
    dtype: str  # as the spec declares it (floats are checked in float64)
    perturbed: bool  # False for token ids: integers have no gradient
    verdict: Verdict | None = None  # None: not checked on its own
    max_rel_error: float | None = None
    grad_norm: float | None = None
    note: str | None = None

    def to_json(self) -> dict:
        return {
            "name": self.name,
            "shape": list(self.shape),
            "dtype": self.dtype,
            "perturbed": self.perturbed,
            "verdict": self.verdict.value if self.verdict is not None else None,
            "max_rel_error": self.max_rel_error,
            "grad_norm": self.grad_norm,
            "note": self.note,
        }


@dataclass
class GradcheckReport:
    """Everything ``nncli gradcheck`` found; feeds the table and ``--json`` alike."""

    name: str
    ok: bool  # no FAIL anywhere
    suspect: int | None  # top-level index of the first failing layer
    suspect_id: str | None  # its module name, nested ones included ("3.body.0")
    suspect_name: str | None
    diagnosis: str  # one sentence
    layers: list[LayerCheck]
    end_to_end: LayerCheck
    batch: int
    mode: str
    objective: str
    exhaustive: bool
    directions: int
    rtol: float
    atol: float
    eps: float
    seed: int
    device: str
    data: str | None
    memory_estimate: int  # bytes, the figure the memory guard compared
    seconds: float
    path: str = "per_layer"  # which implementation ran: "per_layer" or "exhaustive_suffix"
    inputs: list[InputCheck] = field(default_factory=list)  # every input of the model, in forward order

    def leaves(self) -> list[LayerCheck]:
        """Checked layers (no composites), in forward order."""
        return [c for layer in self.layers for c in layer.walk() if not c.children]

    def counts(self) -> dict[str, int]:
        out = {v.value: 0 for v in Verdict}
        for layer in [*self.leaves(), self.end_to_end]:
            out[layer.verdict.value] += 1
        return out

    def detection(self) -> list[tuple[float, float]]:
        """(relative error, probability it escapes) for this run's rtol and directions."""
        return [(r, miss_probability(r, self.rtol, self.directions)) for r in (1e-4, 1e-3, 1e-2)]

    def to_json(self) -> dict:
        return {
            "name": self.name,
            "ok": self.ok,
            "suspect": self.suspect,
            "suspect_id": self.suspect_id,
            "suspect_name": self.suspect_name,
            "diagnosis": self.diagnosis,
            "counts": self.counts(),
            "settings": {
                "batch": self.batch,
                "mode": self.mode,
                "objective": self.objective,
                "exhaustive": self.exhaustive,
                "directions": self.directions,
                "rtol": self.rtol,
                "atol": self.atol,
                "eps": self.eps,
                "seed": self.seed,
                "device": self.device,
                "data": self.data,
            },
            "detection": None
            if self.exhaustive
            else [{"rel_error": r, "miss_probability": p} for r, p in self.detection()],
            "layers": [layer.to_json() for layer in self.layers],
            "end_to_end": self.end_to_end.to_json(),
            "memory_estimate_bytes": self.memory_estimate,
            "seconds": round(self.seconds, 3),
            "path": self.path,
            "inputs": [i.to_json() for i in self.inputs],
        }


def _worst(verdicts) -> Verdict:
    verdicts = list(verdicts)
    if Verdict.FAIL in verdicts:
        return Verdict.FAIL
    if Verdict.NONDETERMINISTIC in verdicts:
        return Verdict.NONDETERMINISTIC
    if Verdict.KINK in verdicts:
        return Verdict.KINK
    return Verdict.OK


def _fmt(x: float | None) -> str:
    return "-" if x is None else f"{x:.2g}"


def _diagnose_layer(layer: LayerCheck) -> str:
    who = f"layer {layer.id} `{layer.name}` ({layer.type})"
    broken = [s for s in layer.structural if not s.ok]
    if broken and broken[0].name == "runs":
        return f"{who} raises while being checked: {broken[0].detail}."
    failed = [t for t in layer.tensors if t.verdict is Verdict.FAIL]
    if failed:
        worst = max(failed, key=lambda t: t.max_rel_error or 0.0)
        names = ", ".join(f"`{t.name}`" for t in failed)
        others = [t for t in layer.tensors if t.verdict is not Verdict.FAIL]
        size = (
            f"relative error up to {_fmt(worst.max_rel_error)}"
            if worst.max_rel_error is not None
            else f"error {_fmt(worst.max_abs_error)} where the gradient should be ~0"
        )
        rest = (
            f"; its {', '.join(f'`{t.name}`' for t in others)} gradient{'s' if len(others) > 1 else ''} "
            f"agree{'' if len(others) > 1 else 's'}"
            if others
            else ""
        )
        text = f"{who} computes a wrong gradient for {names} ({size}{rest}): its backward is the suspect"
    else:
        text = f"{who} has a backward that is not a proper vector-Jacobian product"
    if broken:
        text += "; structural: " + "; ".join(f"{s.name} fails ({s.detail})" for s in broken)
    return text + "."


def _report(built: Built, layers: list[LayerCheck], e2e: LayerCheck, settings: _Settings, **kw) -> GradcheckReport:
    leaves = [c for layer in layers for c in layer.walk() if not c.children]
    failing = [c for c in leaves if c.verdict is Verdict.FAIL]
    kinked = [c for c in leaves + [e2e] if c.verdict is Verdict.KINK]
    unrepeatable = [c for c in leaves if c.verdict is Verdict.NONDETERMINISTIC]
    ok = not failing and not unrepeatable and e2e.verdict is not Verdict.FAIL
    suspect = failing[0] if failing else unrepeatable[0] if unrepeatable else None
    if unrepeatable and not failing:
        first = unrepeatable[0]
        detail = next((s.detail for s in first.structural if not s.ok), "")
        diagnosis = (
            f"layer {first.id} `{first.name}` ({first.type}) has a forward that is not deterministic "
            f"under a fixed seed ({detail}): its gradient cannot be checked. Draw random numbers "
            "from torch (seeded) rather than Python's `random` or numpy, and keep no state "
            "between calls."
        )
        if len(unrepeatable) > 1:
            diagnosis += " Also: " + ", ".join(c.id for c in unrepeatable[1:]) + "."
    elif suspect is not None:
        diagnosis = _diagnose_layer(suspect)
        if len(failing) > 1:
            diagnosis = diagnosis[:-1] + (
                f"; {len(failing) - 1} more layer(s) fail too: " + ", ".join(c.id for c in failing[1:]) + "."
            )
    elif e2e.verdict is Verdict.FAIL:
        worst = max((t.max_rel_error or 0.0) for t in e2e.tensors) if e2e.tensors else None
        diagnosis = (
            "every layer passes on its own but the whole model's gradient does not (relative error "
            f"{_fmt(worst)}): look for state shared between layers or a forward that changes "
            "from one call to the next."
        )
        if any(not s.ok for s in e2e.structural):
            diagnosis = f"the whole model raises while being checked: {e2e.structural[0].detail}."
    elif kinked:
        diagnosis = (
            f"no gradient error found; {len(kinked)} check(s) sit on kinks (ReLU at 0, max-pool ties, "
            "Step, abs), inconclusive there: " + ", ".join(c.id for c in kinked) + "."
        )
    else:
        errors = [t.max_rel_error for c in leaves + [e2e] for t in c.tensors if t.max_rel_error is not None]
        diagnosis = (
            f"all {len(leaves)} layers and the end-to-end check agree with central differences "
            f"(largest relative error {_fmt(max(errors) if errors else None)})."
        )
    return GradcheckReport(
        name=built.spec.name or (built.spec.path.stem if built.spec.path else "model"),
        ok=ok,
        suspect=suspect.index if suspect else None,
        suspect_id=suspect.id if suspect else None,
        suspect_name=suspect.name if suspect else None,
        diagnosis=diagnosis,
        layers=layers,
        end_to_end=e2e,
        exhaustive=settings.exhaustive,
        directions=settings.directions,
        rtol=settings.rtol,
        atol=settings.atol,
        eps=settings.eps,
        **kw,
    )


def _add_inputs(report: GradcheckReport, built: Built) -> None:
    """``report.inputs`` from the end-to-end check; with several float inputs, a failing one is
    named in the diagnosis (the input whose path carries the wrong gradient)."""
    rows = built.inputs or (("input", tuple(built.input_shape), built.input_dtype, built.input_high),)
    checks = {t.name: t for t in report.end_to_end.tensors}
    for name, shape, dtype, _ in rows:
        row = InputCheck(name, tuple(shape), str(dtype), perturbed=not str(dtype).startswith("int"))
        tensor = checks.get(f"input {name}" if len(rows) > 1 else "input")
        if not row.perturbed:
            row.note = "token ids: not perturbed (integers have no gradient); the weights they select are checked"
        elif tensor is not None:
            row.verdict, row.max_rel_error, row.grad_norm = tensor.verdict, tensor.max_rel_error, tensor.grad_norm
        else:
            row.note = "perturbed jointly with the parameters (end to end: `input + parameters`)"
        report.inputs.append(row)
    failing = [i.name for i in report.inputs if i.verdict is Verdict.FAIL]
    if failing and len(rows) > 1:
        fine = [i.name for i in report.inputs if i.verdict is Verdict.OK]
        report.diagnosis += (
            f" End to end, the gradient of input {', '.join(f'`{n}`' for n in failing)} "
            f"fail{'s' if len(failing) == 1 else ''}"
            + (f"; {', '.join(f'`{n}`' for n in fine)} agree{'s' if len(fine) == 1 else ''}." if fine else ".")
        )
