"""Library parameter -> command-line flag, for errors: the library names its parameters
(``InputError(..., param="batch_size")``, a message starting ``batch_size:``) and the command
line shows the flag the user typed (``--batch-size:``)."""

from __future__ import annotations

# One table for every command; a parameter that two commands spell differently is named by the
# command's own option in the library call (e.g. gradcheck passes its --batch as ``batch``).
FLAGS = {
    "batch": "--batch",
    "batch_size": "--batch-size",
    "checkpoint": "--checkpoint",
    "device": "--device",
    "epochs": "--epochs",
    "eps": "--eps",
    "force": "--force",
    "format": "--format",
    "limit": "--limit",
    "method": "--method",
    "nproc_per_node": "--nproc-per-node",
    "out": "--out",
    "out_dir": "--out",
    "output": "--output",
    "resume": "--resume",
    "save": "--save",
    "split": "--split",
    "step_size": "--step-size",
    "steps": "--steps",
    "threads": "--threads",
    "value_range": "--range",
}


def flag_names(err) -> None:
    """Name the flag in ``err``'s message where the library named its parameter (in place)."""
    param = getattr(err, "param", None)
    flag = FLAGS.get(param) if param else None
    if flag and err.message.startswith(f"{param}:"):
        err.message = flag + err.message[len(param) :]
