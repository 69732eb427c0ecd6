"""Adversarial examples against a trained run: FGSM and PGD under an L-infinity budget.

``methods`` holds the attacks on a batch (pure torch); ``run`` the ``nncli attack`` tool, which
rebuilds a run, reloads its data split and reports clean and robust accuracy per eps.
"""

from nncli.attack.methods import fgsm, pgd, within
from nncli.attack.run import DEFAULT_EPS, METHODS, AttackResult, AttackRow, parse_eps, parse_range, run_attack

__all__ = [
    "DEFAULT_EPS",
    "METHODS",
    "AttackResult",
    "AttackRow",
    "fgsm",
    "parse_eps",
    "parse_range",
    "pgd",
    "run_attack",
    "within",
]
