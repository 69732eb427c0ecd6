"""Library parameter -> command-line flag, for errors: the library names its parameters
(``InputError(..., param="batch_size")``, a message starting ``batch_size:``) and the command
line shows the flag the user typed (``--batch-size:``)."""

from __future__ import annotations

# One table for every command; a parameter that two commands spell differently is named by the
# command's own option in the library call (e.g. gradcheck passes its --batch as ``batch``).
# A train: key is here where `nncli train` has a flag for it; an override of another key comes
# from --set, and its error keeps the key's name.
FLAGS = {
    "amp": "--amp",
    "atol": "--atol",
    "batch": "--batch",
    "batch_size": "--batch-size",
    "checkpoint": "--checkpoint",
    "checkpoint_every": "--checkpoint-every",
    "clip_grad_norm": "--clip-grad-norm",
    "data": "--data",
    "depth": "--depth",
    "device": "--device",
    "directions": "--directions",
    "dtype": "--dtype",
    "epochs": "--epochs",
    "experiment": "--experiment",
    "eps": "--eps",
    "fmt": "--format",
    "force": "--force",
    "format": "--format",
    "limit": "--limit",
    "loss": "--loss",
    "lr": "--lr",
    "max_flops": "--max-flops",
    "max_growth": "--max-growth",
    "max_memory": "--max-memory",
    "max_params": "--max-params",
    "method": "--method",
    "metric": "--metric",
    "min_gamma": "--min-gamma",
    "min_ratio": "--min-ratio",
    "momentum": "--momentum",
    "nproc_per_node": "--nproc-per-node",
    "objective": "--objective",
    "optimizer": "--optimizer",
    "out": "--out",
    "out_dir": "--out",
    "output": "--output",
    "patience": "--patience",
    "pruner": "--pruner",
    "rankdir": "--rankdir",
    "resume": "--resume",
    "rtol": "--rtol",
    "sampler": "--sampler",
    "save": "--save",
    "schedule": "--schedule",
    "seed": "--seed",
    "seeds": "--seeds",
    "split": "--split",
    "step_size": "--step-size",
    "steps": "--steps",
    "sweep_depths": "--sweep-depth",
    "tensorboard": "--tensorboard",
    "threads": "--threads",
    "tracking_uri": "--tracking-uri",
    "trials": "--trials",
    "value_range": "--range",
    "view": "--view",
    "warmup_steps": "--warmup-steps",
    "weight_decay": "--weight-decay",
}


def flag_names(err) -> None:
    """Name the flag in ``err``'s message where the library named its parameter (in place)."""
    param = getattr(err, "param", None)
    flag = FLAGS.get(param) if param else None
    if flag and err.message.startswith(f"{param}:"):
        err.message = flag + err.message[len(param) :]
