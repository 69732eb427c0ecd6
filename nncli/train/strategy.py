"""Where and how a run computes: the strategy object the training loop delegates to.

:class:`Strategy` owns every device-side choice of one training process, so that the loop
(:mod:`nncli.train.epoch`) only calls it: the device and data placement, the memory format,
``torch.compile`` and the DistributedDataParallel wrap, mixed precision (autocast and the fp16
grad scaler), gradient clipping, and the reductions across DDP processes (flags the ranks must
agree on, and sums). Without DDP the reductions return their input.
"""

from __future__ import annotations

from contextlib import nullcontext

import torch

from nncli.data.multi import Inputs, feed
from nncli.train.config import TrainConfig


class Strategy:
    """The device-side choices of one training process, made once from the config.

    Args:
        device: this process's ``torch.device``.
        cfg: the run's config (``amp``, ``compile``, ``channels_last``, ``clip_grad_norm``).
        rank, world: this process's DDP rank and the number of processes (0, 1 without DDP).

    Attributes set on the way: ``channels_last``, ``params`` (the trainable parameters that
    clipping sees) and ``scaler`` (fp16's GradScaler, else None) by :meth:`prepare_model`;
    ``data_on_device`` by :meth:`place_data`.
    """

    def __init__(self, device: torch.device, cfg: TrainConfig, rank: int = 0, world: int = 1) -> None:
        self.device = device
        self.cfg = cfg
        self.rank, self.world = rank, world
        self.amp_dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(cfg.amp)
        self.channels_last = False
        self.data_on_device = False
        self.clip = cfg.clip_grad_norm
        self.params: list = []
        self.scaler = None

    # ---- the model ----------------------------------------------------------------------
    def prepare_model(self, raw: torch.nn.Module, input_shape) -> None:
        """Switch the model to channels-last memory when that is asked for, or on ``auto`` for a
        CUDA model with Conv2d layers (image inputs only)."""
        mode, dev = self.cfg.channels_last, self.device
        has_conv = any(isinstance(m, torch.nn.Conv2d) for m in raw.modules())
        self.channels_last = (mode == "true" or (mode == "auto" and dev.type == "cuda" and has_conv)) and len(
            input_shape
        ) == 3
        if self.channels_last:
            raw.to(memory_format=torch.channels_last)
        # frozen (transferred) layers are left out: clipping must not count them
        self.params = [p for p in raw.parameters() if p.requires_grad]
        # fp16's small range needs loss scaling; bf16 and float32 do not
        self.scaler = torch.amp.GradScaler(self.device.type) if self.cfg.amp == "fp16" else None

    def wrap(self, raw: torch.nn.Module, outputs_untrained: bool = False):
        """``(train_model, eval_model)``: the model wrapped in DDP when there are several
        processes, each compiled when ``compile`` is on. Evaluation runs on the raw model (every
        rank evaluates its share and the sums are all-reduced, no DDP hooks needed).
        ``outputs_untrained``: some output is not in the loss, so the parameters only it reads get
        no gradient, which DDP must be told to expect."""
        model = raw
        if self.world > 1:
            from torch.nn.parallel import DistributedDataParallel as DDP

            ids = [self.device.index] if self.device.type == "cuda" else None
            model = DDP(raw, device_ids=ids, find_unused_parameters=outputs_untrained)
        train_model = torch.compile(model) if self.cfg.compile else model
        eval_model = torch.compile(raw) if self.cfg.compile else raw
        return train_model, eval_model

    # ---- the data -----------------------------------------------------------------------
    def place_data(self, ds):
        """The dataset where batches are cut from: all of it on the GPU when it fits in 40 % of the
        free memory (no copy per batch), else pinned host memory copied batch by batch."""
        dev = self.device
        self.data_on_device = dev.type == "cpu"
        if dev.type == "cuda":
            need = sum(
                t.nbytes if isinstance(t, Inputs) else t.numel() * t.element_size()
                for t in (ds.x_train, ds.y_train, ds.x_val, ds.y_val, ds.x_test, ds.y_test)
            )
            free, _ = torch.cuda.mem_get_info(dev)
            self.data_on_device = need < 0.4 * free  # leave the rest to weights and activations
        placed = ds.to(dev) if (self.data_on_device and dev.type != "cpu") else ds
        if self.channels_last and self.data_on_device:
            for split in ("train", "val", "test"):
                x = getattr(placed, f"x_{split}")
                setattr(placed, f"x_{split}", x.contiguous(memory_format=torch.channels_last))
        if not self.data_on_device:
            for split in ("train", "val", "test"):
                setattr(placed, f"x_{split}", getattr(placed, f"x_{split}").pin_memory())
        return placed

    def batch(self, x, y, idx):
        """The examples ``idx`` of ``(x, y)`` on the device."""
        xb, yb = x[idx], y[idx]
        if not self.data_on_device:
            xb = xb.pin_memory().to(self.device, non_blocking=True)
            yb = yb.to(self.device, non_blocking=True)
            if self.channels_last:
                xb = xb.contiguous(memory_format=torch.channels_last)
        return xb, yb

    # ---- computing ----------------------------------------------------------------------
    def autocast(self):
        """The mixed-precision context of a forward pass (a no-op without ``amp``)."""
        if self.amp_dtype is None:
            return nullcontext()
        return torch.autocast(self.device.type, dtype=self.amp_dtype)

    def forward(self, model, xb):
        """``model(xb)`` under the run's autocast; the output in float32, where losses are taken
        (a tuple of outputs for a network with several)."""
        if self.amp_dtype is None:
            return feed(model, xb)
        with torch.autocast(self.device.type, dtype=self.amp_dtype):
            out = feed(model, xb)
        return tuple(o.float() for o in out) if isinstance(out, tuple) else out.float()

    def backward_step(self, loss, optimizer) -> None:
        """One update from ``loss``: fresh gradients, backward (scaled for fp16), the global norm
        clipped to ``clip_grad_norm`` (on unscaled gradients), then the optimizer's step."""
        optimizer.zero_grad(set_to_none=True)
        scaler, clip = self.scaler, self.clip
        if scaler is not None:
            scaler.scale(loss).backward()
            if clip:
                scaler.unscale_(optimizer)
                torch.nn.utils.clip_grad_norm_(self.params, clip)
            scaler.step(optimizer)
            scaler.update()
            return
        loss.backward()
        if clip:
            torch.nn.utils.clip_grad_norm_(self.params, clip)
        optimizer.step()

    # ---- agreeing across processes ----------------------------------------------------------
    def all_reduce(self, tensor):
        """Sum ``tensor`` over the processes, in place (itself without DDP)."""
        if self.world > 1:
            import torch.distributed as tdist

            tdist.all_reduce(tensor)
        return tensor

    def sum_across(self, values: list) -> list:
        """The sums of ``values`` (numbers) over the processes, as floats (themselves without DDP)."""
        if self.world == 1:
            return list(values)
        totals = torch.tensor([float(v) for v in values], dtype=torch.float64, device=self.device)
        return self.all_reduce(totals).tolist()

    def any_across(self, *flags) -> list:
        """For each flag (a bool or a 0-d tensor), whether it is set on any process. Every rank
        must call this at the same step: it is a collective under DDP."""
        if self.world == 1:
            return [bool(f) for f in flags]
        stacked = torch.stack([torch.as_tensor(f, device=self.device).to(torch.float64) for f in flags])
        return [v > 0 for v in self.all_reduce(stacked).tolist()]
