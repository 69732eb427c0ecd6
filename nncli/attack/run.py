"""``nncli attack``: FGSM and PGD against a finished run, on one of its data splits.

The run's network is rebuilt from its own ``spec.yaml`` and checkpoint (as ``nncli evaluate``
does); the split is reloaded *without* normalisation, so the attack perturbs inputs in the data's
own units (pixels) and clamps them to the data's valid range, while the run's normalisation is
applied inside the attacked function. Each (method, eps) pair is one row of the report: robust
accuracy, how many predictions changed, and the mean L-inf and L2 norms of the perturbations.
"""

from __future__ import annotations

import dataclasses
import io
import math
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch

from nncli.attack.joined import JoinedInputs
from nncli.attack.methods import fgsm, pgd
from nncli.data.multi import load_spec_dataset
from nncli.errors import InputError
from nncli.files import write_atomic
from nncli.formatting import jsonable
from nncli.train.trained import TrainedModel, load_trained, open_run

METHODS = ("fgsm", "pgd")
DEFAULT_EPS = (0.0, 0.01, 0.03, 0.1)
SPLITS = ("train", "val", "test")
# PGD's step when --step-size is not given: 2.5 * eps / steps (Madry et al.), so the walk can
# cross the whole ball and still come back after a projection.
STEP_FACTOR = 2.5


@dataclass
class AttackRow:
    """One attack at one budget, over the whole split."""

    method: str  # fgsm or pgd
    eps: float
    step_size: float | None  # pgd only
    n: int
    correct: int
    accuracy: float  # robust accuracy: correct predictions on the adversarial inputs
    flipped: int  # predictions that differ from the clean ones
    linf_mean: float  # mean over examples of max |x_adv - x|
    l2_mean: float  # mean over examples of ||x_adv - x||_2
    linf_max: float = 0.0  # the largest |x_adv - x| of any element of any example (raw units)
    l2_max: float = 0.0
    budget_used: float = 0.0  # max over elements of |x_adv - x| / its budget: <= 1, inside the eps-ball

    def to_json(self) -> dict:
        return jsonable(asdict(self))


@dataclass
class AttackResult:
    """Clean and robust accuracy of a run's checkpoint, per attack and per eps."""

    run_dir: str
    checkpoint: str
    split: str
    device: str
    n: int
    clean_accuracy: float
    clean_correct: int
    value_range: list | None  # [lo, hi], the inputs' valid range in data units (None: unbounded)
    steps: int = 10
    random_start: bool = True
    seed: int = 0
    eps: list = field(default_factory=list)
    methods: list = field(default_factory=list)
    rows: list = field(default_factory=list)  # AttackRow
    saved: str | None = None  # the .npz written, if any
    plot: list | None = None  # figures written, if any
    classes: list | None = None
    eps_units: str = "raw"  # raw: eps in the data's units; std: in training standard deviations per feature
    notes: list = field(default_factory=list)  # what the reader of the figures should know
    # For the image grid: the first examples of the strongest attack (not part of --json).
    examples: dict | None = field(default=None, repr=False)

    def to_json(self) -> dict:
        out = {f.name: getattr(self, f.name) for f in dataclasses.fields(self) if f.name != "examples"}
        out["rows"] = [r.to_json() for r in self.rows]
        return jsonable(out)


# Budgets and range ends: an attack computes in float32 (max about 3.4e38), and x + eps, the PGD
# step 2.5 * eps / steps and the clamp must stay finite; no real data is scaled past this.
MAX_MAGNITUDE = 1e15
# Budgets in one --eps list: each is a full attack over the split.
MAX_EPS = 64


def parse_eps(text: str) -> list[float]:
    """``"0,0.01,0.03"`` -> ``[0.0, 0.01, 0.03]`` (InputError, exit 2, on anything else)."""
    values = []
    for part in str(text).split(","):
        part = part.strip()
        try:
            value = float(part)
        except ValueError:
            raise InputError(
                f"expected comma-separated numbers like 0,0.01,0.03, found {part!r}", param="eps"
            ) from None
        if not math.isfinite(value) or value < 0:
            raise InputError(f"expected numbers >= 0, found {part!r}", param="eps")
        if value > MAX_MAGNITUDE:
            raise InputError(f"expected numbers up to {MAX_MAGNITUDE:g}, found {part!r}", param="eps")
        values.append(value)
    if len(values) > MAX_EPS:
        raise InputError(f"expected at most {MAX_EPS} budgets, found {len(values):,}", param="eps")
    return values


def parse_range(text: str | None) -> tuple[float, float] | None:
    """``"0,1"`` -> ``(0.0, 1.0)``; None stays None."""
    if text is None:
        return None
    parts = str(text).split(",")
    try:
        lo, hi = (float(p) for p in parts)
    except ValueError:
        raise InputError(f"expected two numbers LO,HI like 0,1, found {text!r}", param="value_range") from None
    if not (math.isfinite(lo) and math.isfinite(hi) and lo < hi):
        raise InputError(f"expected finite LO < HI, found {text!r}", param="value_range")
    if max(abs(lo), abs(hi)) > MAX_MAGNITUDE:
        raise InputError(
            f"expected LO and HI within +-{MAX_MAGNITUDE:g}, found {text!r}",
            param="value_range",
            hint="the attack computes in float32; give the inputs' real range",
        )
    return lo, hi


def run_attack(
    run_dir: str | Path,
    *,
    eps=DEFAULT_EPS,
    methods=METHODS,
    steps: int = 10,
    step_size: float | None = None,
    random_start: bool = True,
    seed: int = 0,
    split: str = "test",
    checkpoint: str = "best",
    device: str = "auto",
    batch_size: int = 256,
    limit: int | None = None,
    value_range: tuple[float, float] | None = None,
    eps_units: str = "raw",
    save: str | Path | None = None,
    force: bool = False,
    keep_examples: int = 8,
    allow_custom: bool = True,
) -> AttackResult:
    """Attack a trained classifier with FGSM and PGD (L-inf) at each eps, on one split.

    Args:
        run_dir: a folder written by ``nncli train`` (its loss must be cross_entropy).
        eps: the budgets, in data units (pixels in [0, 1] for the image sets); 0 is the clean input.
        methods: any of ``fgsm``, ``pgd``.
        steps, step_size: PGD's iterations and step (default ``2.5 * eps / steps``).
        random_start: PGD starts at a uniform random point of the eps-ball (seeded by ``seed``).
        value_range: the inputs' valid ``(lo, hi)``; default the data section's ``range``, or the
            format's (pixels in [0, 1]); else inputs are unbounded (only the eps-ball holds).
        eps_units: ``raw`` (eps in the data's units) or ``std`` (in training standard deviations,
            per feature or channel: a budget that means the same on features of any scale).
        limit: attack only the first ``limit`` examples of the split.
        save: write the adversarial inputs to this ``.npz`` (``force`` to replace it).
        keep_examples: how many examples the result keeps for the image grid.
        allow_custom: False refuses a run whose spec has Custom layers (``--no-custom``).

    Returns:
        AttackResult.

    Raises:
        InputError: not a classification run, a bad option, an existing ``save`` file (exit 2).

    Example:
        >>> run_attack("runs/digits", eps=[0, 0.1], methods=["pgd"]).rows[1].accuracy
        0.0
    """
    from nncli.device import resolve_device

    methods, eps = _check_options(methods, eps, steps, step_size, split)
    save = _check_save(save, force)
    dev = resolve_device(device)
    run, trained = _open_classifier(run_dir, checkpoint, dev, allow_custom)
    x, y, lo, hi = _attack_inputs(run, split, limit, value_range)
    # raw inputs in (the run's normalisation is the model's first module); several inputs joined
    # into one vector per example, so one L-inf ball bounds all of them
    specs = run.spec.input_specs
    model = JoinedInputs(trained.raw_input_model(run.classes), [i.name for i in specs], [i.shape for i in specs])
    x = model.join(x)
    scale = _eps_scale(model, eps_units)
    clean_pred = _predict(model, x, batch_size, dev)
    result = _clean_result(run, trained, dev, split, y, clean_pred, (lo, hi), eps_units)
    result.steps, result.random_start, result.seed, result.eps, result.methods = steps, random_start, seed, eps, methods
    adversarial = _attack_each(
        result, model, (x, y, clean_pred), (step_size, scale), batch_size, dev, keep_examples, save
    )
    if save is not None:
        _save_npz(save, x, y, clean_pred, eps, methods, adversarial, model.split if model.joined else None)
        result.saved = str(save)
    return result


def _clean_result(run, trained, dev, split: str, y, clean_pred, value_range, eps_units: str) -> AttackResult:
    """The result before any attack: the clean accuracy, the range and the notes."""
    lo, hi = value_range
    correct = int((clean_pred == y).sum())
    return AttackResult(
        run_dir=str(run.run_dir),
        checkpoint=str(trained.path),
        split=split,
        device=str(dev),
        n=len(y),
        clean_accuracy=correct / len(y),
        clean_correct=correct,
        value_range=None if lo is None else [lo, hi],
        classes=run.classes,
        eps_units=eps_units,
        notes=_notes(run, eps_units, lo),
    )


def _attack_each(result: AttackResult, model, data, sizes, batch_size: int, dev, keep_examples, save):
    """Run each of ``result``'s methods at each eps, adding a row per attack (and the strongest attack's
    examples) to ``result``; the adversarial splits by (method, eps index) when they are to be saved.
    ``data`` is ``(x, y, clean_pred)``; ``sizes`` is ``(step_size, scale)``, scale the value of one
    unit of eps per element (None: raw units)."""
    (x, y, clean_pred), (step_size, scale) = data, sizes
    methods, eps, steps = result.methods, result.eps, result.steps
    lo, hi = result.value_range or (None, None)
    random_start, seed = result.random_start, result.seed
    adversarial = {}  # (method, eps index) -> the whole adversarial split, only when saved
    for method in methods:
        for e_index, e in enumerate(eps):
            budget = e if scale is None else e * scale.to(dev)
            size = None if method == "fgsm" else (step_size if step_size is not None else STEP_FACTOR * e / steps)
            step = None if size is None or scale is None else size * scale.to(dev)
            adv, pred = _attack_split(
                model,
                x,
                y,
                method,
                budget,
                step if step is not None else size,
                steps,
                (lo, hi),
                random_start,
                seed,
                batch_size,
                dev,
            )
            result.rows.append(_row(method, e, size, x, y, clean_pred, adv, pred, budget))
            if save is not None:
                adversarial[(method, e_index)] = (adv, pred)
            if e_index == len(eps) - 1:
                result.examples = _examples(
                    x, y, clean_pred, adv, pred, keep_examples, method, e, (lo, hi), result.classes
                )
    return adversarial


def _check_options(methods, eps, steps: int, step_size: float | None, split: str) -> tuple[list, list]:
    """The methods (each once) and budgets, checked; InputError (exit 2) naming the parameter."""
    methods = list(dict.fromkeys(methods))
    bad = [m for m in methods if m not in METHODS]
    if bad or not methods:
        raise InputError(f"expected fgsm and/or pgd, found {', '.join(bad) or 'nothing'}", param="method")
    eps = [float(e) for e in eps]
    if not eps or any(not math.isfinite(e) or e < 0 for e in eps):
        raise InputError(f"expected one or more numbers >= 0, found {eps}", param="eps")
    if steps < 1:
        raise InputError(f"expected an integer >= 1, found {steps}", param="steps")
    if step_size is not None and not (math.isfinite(step_size) and step_size > 0):
        raise InputError(f"expected a number > 0, found {step_size}", param="step_size")
    if split not in SPLITS:
        raise InputError(f"expected one of {', '.join(SPLITS)}, found {split!r}", param="split")
    return methods, eps


def _check_save(save, force: bool) -> Path | None:
    if save is None:
        return None
    save = Path(save)
    if save.suffix.lower() != ".npz":
        raise InputError(f"expected a .npz file, found {save.name!r}", param="save")
    if not (save.parent if str(save.parent) else Path(".")).is_dir():
        raise InputError(f"the folder {save.parent} does not exist", param="save")
    if save.exists() and not force:
        raise InputError(f"{save} already exists", hint="pass --force to replace it", param="save")
    return save


def _open_classifier(run_dir, checkpoint: str, dev, allow_custom: bool) -> tuple:
    """The run and its checkpoint's network, weights frozen (only the input's gradient is wanted)."""
    run = open_run(run_dir, allow_custom=allow_custom)
    tokens = [f"{i.name} ({i.dtype})" for i in run.spec.input_specs if i.dtype.startswith("int")]
    if tokens and len(run.spec.input_specs) > 1:
        raise InputError(
            f"{run.run_dir}: FGSM/PGD perturb float inputs by at most eps, and {', '.join(tokens)} "
            "holds token ids: a token id has no value eps away",
            hint="attack runs whose inputs are all float (features, images, signals)",
        )
    if run.train.loss != "cross_entropy":
        raise InputError(
            f"{run.run_dir}: attacks need a classifier trained with cross_entropy, this run used {run.train.loss}"
        )
    trained: TrainedModel = load_trained(run, checkpoint, dev)
    for p in trained.model.parameters():
        p.requires_grad_(False)
    return run, trained


def _attack_inputs(run, split: str, limit: int | None, value_range) -> tuple:
    """The split's raw inputs (data units; :class:`~nncli.data.multi.Inputs` for several), labels
    and the valid range ``lo, hi`` (None: unbounded)."""
    x, y = load_spec_dataset(dataclasses.replace(run.data, normalize=False), run.spec).split(split)
    if y.is_floating_point():
        raise InputError(f"{run.run_dir}: the {split} targets are not class labels")
    if limit is not None:
        x, y = x[:limit], y[:limit]
    if len(x) == 0:
        raise InputError(f"the run's {split} split is empty", param="split")
    if value_range is None:
        value_range = run.data.input_range or (None, None)
    return x, y, *value_range


def _eps_scale(model, eps_units: str):
    """What one unit of eps is, per element of an example: 1 (raw), or the training std (std)."""
    if eps_units == "raw":
        return None
    if eps_units != "std":
        raise InputError(f"expected raw or std, found {eps_units!r}", param="eps_units")
    std = model.element_std()
    if std is None:
        raise InputError(
            "eps in standard deviations needs the run's training statistics, and this run kept its inputs raw "
            "(normalize: false)",
            param="eps_units",
            hint="give eps in the data's units (--eps-units raw)",
        )
    return std.detach()


def _notes(run, eps_units: str, lo) -> list:
    """What a reader of the table should know about the budgets."""
    notes = []
    if eps_units == "raw" and len(run.spec.input) == 1 and run.data.input_range is None:
        notes.append(
            "eps is in the data's raw units, the same for every feature whatever its scale; "
            "--eps-units std gives it in training standard deviations per feature"
        )
    if lo is None:
        notes.append(
            "no valid input range is known (declare one with data: {range: [lo, hi]}): only the eps-ball holds"
        )
    return notes


def _predict(model, inputs, batch_size: int, dev):
    with torch.no_grad():
        return torch.cat(
            [model(inputs[i : i + batch_size].to(dev)).argmax(1).cpu() for i in range(0, len(inputs), batch_size)]
        )


def _attack_split(
    model, x, y, method: str, e, size, steps: int, value_range, random_start: bool, seed: int, batch_size: int, dev
) -> tuple:
    """The adversarial split for one (method, eps) and the model's predictions on it (on the CPU)."""
    lo, hi = value_range
    # One stream per eps: a budget's numbers do not depend on which others are in the list.
    gen = torch.Generator(device="cpu").manual_seed(seed)
    advs, preds = [], []
    for i in range(0, len(x), batch_size):
        xb, yb = x[i : i + batch_size].to(dev), y[i : i + batch_size].to(dev)
        if method == "fgsm":
            adv = fgsm(model, xb, yb, e, lo, hi)
        else:
            adv = pgd(
                model,
                xb,
                yb,
                e,
                steps=steps,
                step_size=0.0 if size is None else size,
                lo=lo,
                hi=hi,
                random_start=random_start,
                generator=gen,
            )
        with torch.no_grad():
            preds.append(model(adv).argmax(1).cpu())
        advs.append(adv.cpu())
    return torch.cat(advs), torch.cat(preds)


def _row(method: str, e: float, size, x, y, clean_pred, adv, pred, budget) -> AttackRow:
    """One (method, eps) line of the report: robust accuracy, flips, the perturbations' norms, and
    how much of its budget the largest perturbation used (1 at most: inside the eps-ball)."""
    delta = (adv - x).flatten(1)
    correct = int((pred == y).sum())
    used = 0.0
    if e > 0 and len(x):
        per = (adv - x).abs() / (budget.cpu() if isinstance(budget, torch.Tensor) else budget)
        used = float(per.max())
    return AttackRow(
        method=method,
        eps=e,
        step_size=size,
        n=len(x),
        correct=correct,
        accuracy=correct / len(x),
        flipped=int((pred != clean_pred).sum()),
        linf_mean=float(delta.abs().amax(1).mean()),
        l2_mean=float(delta.norm(dim=1).mean()),
        linf_max=float(delta.abs().max()) if delta.numel() else 0.0,
        l2_max=float(delta.norm(dim=1).max()) if len(delta) else 0.0,
        budget_used=used,
    )


def _examples(x, y, clean_pred, adv, pred, keep: int, method: str, e: float, value_range, classes) -> dict:
    """The image grid's examples: the ones the attack flipped first (that is what the grid is
    for), then others, in split order."""
    changed = pred != clean_pred
    pick = torch.cat([changed.nonzero().flatten(), (~changed).nonzero().flatten()])[: min(keep, len(x))]
    return {
        "x": x[pick].numpy(),
        "x_adv": adv[pick].numpy(),
        "y": y[pick].numpy(),
        "pred_clean": clean_pred[pick].numpy(),
        "pred_adv": pred[pick].numpy(),
        "method": method,
        "eps": e,
        "value_range": value_range,
        "classes": classes,
    }


def _save_npz(path: Path, x, y, clean_pred, eps, methods, adversarial, split=None) -> None:
    """``x``, ``y``, ``pred_clean`` (N), ``eps`` (E), ``methods`` (M), ``x_adv`` (M, E, N, ...) and
    ``pred_adv`` (M, E, N), in data units; written atomically. Several inputs (``split`` given)
    are saved by their names instead of ``x``: ``left`` (N, ...) and ``left_adv`` (M, E, N, ...),
    so the clean file is one ``predict`` reads."""
    x_adv = np.stack([np.stack([adversarial[(m, i)][0].numpy() for i in range(len(eps))]) for m in methods])
    pred_adv = np.stack([np.stack([adversarial[(m, i)][1].numpy() for i in range(len(eps))]) for m in methods])
    inputs = {"x": x.numpy(), "x_adv": x_adv.astype(np.float32)}
    if split is not None:
        clean, moved = split(x), split(torch.from_numpy(x_adv))
        inputs = {**{n: v.numpy() for n, v in clean.items()}, **{f"{n}_adv": v.numpy() for n, v in moved.items()}}
    buffer = io.BytesIO()
    np.savez(
        buffer,
        **inputs,
        y=y.numpy(),
        pred_clean=clean_pred.numpy(),
        eps=np.asarray(eps, dtype=np.float64),
        methods=np.asarray(methods, dtype=str),
        pred_adv=pred_adv,
    )
    write_atomic(path, buffer.getvalue(), durable=True)
