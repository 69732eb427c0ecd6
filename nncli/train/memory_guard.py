"""Before a run starts: will one training step fit in the device's memory?

The estimate is ``nncli params``'s own (weights, buffers, gradients, the optimizer's state and
the activations saved for backward for one batch, counted on the meta-device model that
:func:`~nncli.train.prepare.prepare` inferred), compared with what
the device has free. A run that cannot fit is refused with both figures (exit 2) before a run
folder is written, rather than dying of an allocator failure mid-epoch.
"""

from __future__ import annotations

from nncli.errors import InputError


def check_training_memory(setup, device, available: int | None = None) -> int:
    """Refuse a run whose first step cannot fit; returns the estimate in bytes.

    Args:
        setup: the prepared run (:class:`~nncli.train.prepare.Setup`).
        device: the torch.device it will run on.
        available: free bytes (default: what the device has free now).

    Raises:
        InputError: the estimate exceeds the free memory (exit 2).
    """
    from nncli.formatting import fmt_bytes
    from nncli.memory import available_memory
    from nncli.params import count

    cfg = setup.cfg
    n_train = setup.dataset.sizes()["train"]
    batch = max(1, min(cfg.batch_size, n_train))
    report = count(setup.spec, batch_size=batch, dtype="float32", optimizer=cfg.optimizer, built=setup.built)
    need = report.memory.total
    free = available if available is not None else available_memory(device)
    if free is not None and need > free:
        mem = report.memory
        raise InputError(
            f"training {setup.spec.name} needs about {fmt_bytes(need)} on {device} for one step of batch "
            f"{batch} (weights {fmt_bytes(mem.weights)}, gradients {fmt_bytes(mem.gradients)}, "
            f"{cfg.optimizer} state {fmt_bytes(mem.optimizer_state)}, activations {fmt_bytes(mem.activations)}), "
            f"and {fmt_bytes(free)} is free",
            hint="use a smaller --batch-size, a smaller model, or a machine with more memory",
        )
    return need
