"""``nncli attack``: FGSM and PGD against the references, eps 0, the clamp, monotone accuracy, the CLI.

References, independent of nncli's code: the ``torchattacks`` package (FGSM and PGD, where it is
installed: the ``attack-ref`` extra) and the same attacks written out by hand below from the
papers' formulas. With the same random start all three must give the same adversarial examples.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from conftest import SPECS
from torch import nn

from nncli.attack import fgsm, pgd, run_attack
from nncli.errors import InputError

EPS_LIST = [0.0, 0.01, 0.03, 0.1, 0.3]


pytestmark = pytest.mark.usefixtures("one_torch_thread")  # conftest: tiny models, one thread


def small_cnn(seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    model = nn.Sequential(
        nn.Conv2d(1, 8, 3, padding=1),
        nn.BatchNorm2d(8),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Flatten(),
        nn.Linear(8 * 4 * 4, 5),
    )
    model.eval()
    with torch.no_grad():  # non-trivial BatchNorm statistics, used in eval mode
        model[1].running_mean.uniform_(-0.2, 0.2)
        model[1].running_var.uniform_(0.5, 2.0)
    return model


def batch(n: int = 32, seed: int = 1):
    g = torch.Generator().manual_seed(seed)
    return torch.rand(n, 1, 8, 8, generator=g), torch.randint(0, 5, (n,), generator=g)


# -- hand-written references (Goodfellow et al. 2015; Madry et al. 2018) -------------------------


def ref_fgsm(model, x, y, eps):
    x = x.clone().requires_grad_(True)
    F.cross_entropy(model(x), y).backward()
    return (x + eps * x.grad.sign()).clamp(0, 1).detach()


def ref_pgd(model, x, y, eps, alpha, steps, start):
    adv = (x + start).clamp(0, 1)
    for _ in range(steps):
        adv = adv.clone().requires_grad_(True)
        F.cross_entropy(model(adv), y).backward()
        adv = adv.detach() + alpha * adv.grad.sign()
        adv = torch.min(torch.max(adv, x - eps), x + eps).clamp(0, 1)
    return adv.detach()


def test_fgsm_matches_the_hand_written_reference():
    model = small_cnn()
    x, y = batch()
    for eps in (0.01, 0.1):
        assert torch.equal(fgsm(model, x, y, eps, 0.0, 1.0), ref_fgsm(model, x, y, eps))


def test_pgd_matches_the_hand_written_reference_with_the_same_random_start():
    model = small_cnn()
    x, y = batch()
    eps, alpha, steps = 0.1, 0.025, 10
    start = torch.empty_like(x).uniform_(-eps, eps, generator=torch.Generator().manual_seed(7))
    ours = pgd(
        model, x, y, eps, steps=steps, step_size=alpha, lo=0.0, hi=1.0, generator=torch.Generator().manual_seed(7)
    )
    torch.testing.assert_close(ours, ref_pgd(model, x, y, eps, alpha, steps, start), rtol=0, atol=1e-6)
    # no random start: the walk starts at x
    ours = pgd(model, x, y, eps, steps=steps, step_size=alpha, lo=0.0, hi=1.0, random_start=False)
    torch.testing.assert_close(ours, ref_pgd(model, x, y, eps, alpha, steps, torch.zeros_like(x)), rtol=0, atol=1e-6)


def test_fgsm_and_pgd_match_torchattacks():
    torchattacks = pytest.importorskip(
        "torchattacks", reason="torchattacks is not installed (pip install -e .[attack-ref])"
    )
    model = small_cnn()
    x, y = batch(64)
    for eps in (0.03, 0.1):
        theirs = torchattacks.FGSM(model, eps=eps)(x, y)
        assert torch.equal(fgsm(model, x, y, eps, 0.0, 1.0), theirs)
        torch.manual_seed(123)  # torchattacks draws its random start from torch's global stream
        theirs = torchattacks.PGD(model, eps=eps, alpha=eps / 4, steps=10, random_start=True)(x, y)
        ours = pgd(
            model, x, y, eps, steps=10, step_size=eps / 4, lo=0.0, hi=1.0, generator=torch.Generator().manual_seed(123)
        )
        torch.testing.assert_close(ours, theirs, rtol=0, atol=1e-6)
        # the perturbation actually does something: this is not a comparison of two no-ops
        assert (ours - x).abs().max() > eps / 2


def test_pgd_stays_in_the_ball_and_the_range():
    model = small_cnn()
    x, y = batch()
    adv = pgd(model, x, y, 0.3, steps=5, step_size=0.2, lo=0.0, hi=1.0)
    assert adv.min() >= 0 and adv.max() <= 1
    assert (adv - x).abs().max() <= 0.3 + 1e-6
    adv = fgsm(model, x * 0.5 + 0.25, y, 0.1, 0.3, 0.7)  # a narrower valid range clamps harder
    assert adv.min() >= 0.3 - 1e-7 and adv.max() <= 0.7 + 1e-7


def test_eps_zero_is_the_input_itself():
    model = small_cnn()
    x, y = batch()
    assert torch.equal(fgsm(model, x, y, 0.0, 0.0, 1.0), x)
    assert torch.equal(pgd(model, x, y, 0.0, steps=3, step_size=0.1, lo=0.0, hi=1.0), x)


# -- on a trained digits CNN ---------------------------------------------------------------------


@pytest.fixture(scope="module")
def digits_run(tmp_path_factory):
    """specs/digits-cnn.yaml trained for 5 epochs (an undefended classifier, ~95% test accuracy)."""
    from nncli.train import run_training

    torch.set_num_threads(1)
    out = tmp_path_factory.mktemp("attack") / "digits"
    result = run_training(SPECS / "digits-cnn.yaml", {"train": {"epochs": 5}}, out, device="cpu")
    assert result.status == "completed" and result.test["accuracy"] > 0.85
    return out


def clean_correct_by_hand(run_dir) -> int:
    """Correct predictions of the run's best checkpoint on its first 200 test examples, by plain torch."""
    from nncli import data as data_mod
    from nncli.build import build_model
    from nncli.runs import load_checkpoint
    from nncli.train.trained import open_run

    run = open_run(run_dir)
    ckpt = load_checkpoint(run.run_dir / "checkpoints" / "best.pt")
    model = build_model(run.spec, seed=0).model
    model.load_state_dict(ckpt["model"])
    model.eval()
    ds = data_mod.load_dataset(run.data)  # normalised, as in training
    with torch.no_grad():
        return int((model(ds.x_test[:200]).argmax(1) == ds.y_test[:200]).sum())


def test_eps_zero_gives_clean_accuracy_and_accuracy_falls_with_eps(digits_run):
    result = run_attack(digits_run, eps=EPS_LIST, device="cpu", limit=200)
    assert result.value_range == [0.0, 1.0]  # the digits' pixels, 0..16 scaled to [0, 1]
    assert result.clean_correct == clean_correct_by_hand(digits_run)
    for method in ("fgsm", "pgd"):
        rows = [r for r in result.rows if r.method == method]
        assert [r.eps for r in rows] == EPS_LIST
        assert rows[0].accuracy == result.clean_accuracy and rows[0].flipped == 0 and rows[0].linf_mean == 0
        accs = [r.accuracy for r in rows]
        assert all(a >= b for a, b in zip(accs, accs[1:], strict=False)), (method, accs)
        assert accs[-1] < result.clean_accuracy - 0.3, (method, accs)  # the attack really bites
        for r in rows[1:]:
            assert 0 < r.linf_mean <= r.eps + 1e-6
    pgd_rows = {r.eps: r.accuracy for r in result.rows if r.method == "pgd"}
    fgsm_rows = {r.eps: r.accuracy for r in result.rows if r.method == "fgsm"}
    assert pgd_rows[0.3] <= fgsm_rows[0.3]  # the iterated attack is at least as strong


def test_attack_cli_json_save_and_plot(digits_run, run_cli, tmp_path):
    npz, png = tmp_path / "adv.npz", tmp_path / "acc.png"
    res = run_cli(
        [
            "attack",
            digits_run,
            "--eps",
            "0,0.1",
            "--method",
            "pgd",
            "--steps",
            "5",
            "--limit",
            "50",
            "--save",
            npz,
            "--plot",
            png,
            "--json",
        ]
    )
    assert res.code == 0, res.text
    doc = json.loads(res.out)
    assert {"clean_accuracy", "rows", "eps", "methods", "value_range", "n", "saved"} <= set(doc)
    assert doc["n"] == 50 and doc["methods"] == ["pgd"] and len(doc["rows"]) == 2
    assert {"method", "eps", "accuracy", "flipped", "linf_mean", "l2_mean", "step_size"} <= set(doc["rows"][0])
    assert doc["rows"][1]["step_size"] == pytest.approx(2.5 * 0.1 / 5)
    with np.load(npz) as z:
        assert z["x_adv"].shape == (1, 2, 50, 1, 8, 8) and z["pred_adv"].shape == (1, 2, 50)
        assert np.array_equal(z["x_adv"][0, 0], z["x"])  # eps 0 leaves the inputs alone
        assert np.abs(z["x_adv"][0, 1] - z["x"]).max() <= 0.1 + 1e-6
        flipped = int((z["pred_adv"][0, 1] != z["pred_clean"]).sum())
        assert flipped == doc["rows"][1]["flipped"]
    assert png.stat().st_size > 0 and (tmp_path / "acc-examples.png").stat().st_size > 0
    # human output
    res = run_cli(["attack", digits_run, "--eps", "0.05", "--method", "fgsm", "--limit", "20"])
    assert res.code == 0 and "robust accuracy" in res.out and "fgsm" in res.out


@pytest.mark.parametrize(
    "args, message",
    [
        (["--eps", "0,-0.1"], "--eps: expected numbers >= 0"),
        (["--eps", "a"], "--eps: expected comma-separated numbers"),
        (["--method", "cw"], "--method: expected fgsm and/or pgd"),
        (["--range", "1,0"], "--range: expected finite LO < HI"),
        (["--save", "x.txt"], "--save: expected a .npz file"),
    ],
)
def test_attack_bad_options_exit_2(digits_run, run_cli, args, message):
    res = run_cli(["attack", digits_run, *args])
    assert res.code == 2 and message in res.text and "Traceback" not in res.text


def test_attack_refuses_a_missing_run_folder(run_cli, tmp_path):
    res = run_cli(["attack", tmp_path / "nothing"])
    assert res.code == 2 and "no such run folder" in res.text
    with pytest.raises(InputError, match="no such run folder"):
        run_attack(tmp_path / "nothing")


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs an NVIDIA GPU (none is visible to torch)")
def test_pgd_on_cuda_matches_cpu():
    model = small_cnn()
    x, y = batch(64)
    cpu = pgd(model, x, y, 0.1, steps=10, step_size=0.025, lo=0.0, hi=1.0, generator=torch.Generator().manual_seed(5))
    # the random start is drawn on the CPU and moved: the same start on either device
    gpu = pgd(
        model.cuda(),
        x.cuda(),
        y.cuda(),
        0.1,
        steps=10,
        step_size=0.025,
        lo=0.0,
        hi=1.0,
        generator=torch.Generator().manual_seed(5),
    )
    # a sign of a gradient that is ~0 may differ between the devices' kernels: compare the bulk
    close = ((gpu.cpu() - cpu).abs() <= 1e-5).float().mean()
    assert close > 0.99
