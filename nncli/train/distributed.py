"""DDP: :func:`launch_distributed` starts one training process per device through torchrun's
launcher, and :func:`_ddp_entry` is what each of them runs.

Each global batch is split across the ranks and the summed loss scaled by
``world / global_batch``, so the averaged gradient is exactly the single-process gradient of the
same global batch. Only global rank 0 writes files and reports progress.
"""

from __future__ import annotations

import os
import signal
import threading
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path

import torch

from nncli.errors import CheckFailed, InputError, NncliError, RunFailed, SpecError
from nncli.train.loop import Trainer
from nncli.train.prepare import prepare
from nncli.train.runs import TrainResult, check_tensorboard


def launch_distributed(
    spec=None,
    overrides: dict | None = None,
    out_dir: str | Path | None = None,
    *,
    nproc_per_node: int,
    nnodes: int = 1,
    node_rank: int = 0,
    master_addr: str = "127.0.0.1",
    master_port: int = 29500,
    device: str = "auto",
    resume: str | Path | None = None,
    callbacks_factory: Callable | None = None,
    tensorboard: bool = False,
    runs_root: str | Path = "runs",
    sync_batchnorm: bool = True,
) -> TrainResult | None:
    """Run :func:`run_training` under torch.distributed with DistributedDataParallel.

    Uses torchrun's own launcher (``torch.distributed.launcher.elastic_launch``): a standalone
    rendezvous on one node, a static one (``master_addr:master_port``, ``node_rank``) across
    nodes. Backend gloo on CPU, nccl on CUDA (one GPU per process, ``cuda:LOCAL_RANK``). Only
    global rank 0 writes files and reports progress. Everything is validated here first, so bad
    input exits 2 before any worker starts.

    On CUDA, BatchNorm layers are converted to SyncBatchNorm (statistics over the global batch,
    as one process computes them) unless ``sync_batchnorm`` is False; each rank augments with
    its own stream; every rank's RNG states go into the checkpoint, so a resume is exact on each
    rank; ``cuda:N`` puts local rank ``r`` on ``cuda:N+r``.

    ``callbacks_factory`` (a picklable callable, e.g. a module-level function or a
    ``functools.partial`` of one) is called in every worker and returns its
    :class:`~nncli.train.callbacks.Callback` list (progress is shown by rank 0 only).

    Returns:
        Rank 0's TrainResult on the node that ran rank 0; None on the other nodes.
    """
    from nncli.device import resolve_device

    world = nproc_per_node * nnodes
    dev = resolve_device(device)
    if tensorboard:
        check_tensorboard()
    first = (dev.index or 0) if dev.type == "cuda" else 0  # the index a user gave is kept
    if dev.type == "cuda" and torch.cuda.device_count() < first + nproc_per_node:
        raise InputError(
            f"{nproc_per_node} processes from {dev}: only {torch.cuda.device_count()} CUDA device(s) visible",
            hint="use one process per GPU, or the CPU",
            param="nproc_per_node",
        )
    # Only node 0 writes the run folder: another node neither inspects nor locks it (on a shared
    # file system it would see node 0's lock, or the files node 0 is writing)
    writer = node_rank == 0
    setup = prepare(spec, overrides, out_dir, resume=resume, world_size=world, runs_root=runs_root, writer=writer)
    request = {
        "spec_text": None if resume else setup.spec_text,
        "spec_path": setup.spec_path,
        "overrides": overrides,
        "out_dir": str(setup.run_dir),
        "device": dev.type,
        "resume": str(resume) if resume else None,
        "callbacks_factory": callbacks_factory,
        "tensorboard": tensorboard,
        "device_index": first,
        "sync_batchnorm": sync_batchnorm,
        "launcher_pid": os.getpid(),
        "writer": writer,
    }
    config = _launch_config(nproc_per_node, nnodes, node_rank, master_addr, master_port)
    if not writer:
        return _rank0_answer(_launch(config, request, nproc_per_node))
    return _rank0_answer(_launch_writing(setup, config, request, nproc_per_node))


def _launch_writing(setup, config, request: dict, nproc_per_node: int) -> dict:
    """Node 0's launch: the run folder locked and claimed first, the lock shared with every rank."""
    from nncli.train.lock import FolderLock
    from nncli.train.runs import claim_run_folder

    lock = FolderLock(setup.run_dir, "run").acquire()
    # every rank holds the launcher's lock too: the folder stays locked while any of them lives
    request["lock"] = lock.share()
    try:
        claim_run_folder(setup)
        return _launch(config, request, nproc_per_node)
    finally:
        lock.release()


def _launch_config(nproc_per_node: int, nnodes: int, node_rank: int, master_addr: str, master_port: int):
    """torchrun's launch settings: a standalone rendezvous on one node, a static one across nodes."""
    import uuid

    from torch.distributed.launcher.api import LaunchConfig

    if nnodes == 1:
        rdzv = dict(rdzv_backend="c10d", rdzv_endpoint="localhost:0", run_id=str(uuid.uuid4()))
    else:
        rdzv = dict(
            rdzv_backend="static",
            rdzv_endpoint=f"{master_addr}:{master_port}",
            run_id="nncli",
            rdzv_configs={"rank": node_rank, "timeout": 900},
        )
    return LaunchConfig(
        min_nodes=nnodes,
        max_nodes=nnodes,
        nproc_per_node=nproc_per_node,
        max_restarts=0,
        monitor_interval=0.1,
        start_method="spawn",
        signals_to_handle="SIGTERM,SIGHUP,SIGQUIT",
        **rdzv,
    )


def _launch(config, request: dict, nproc_per_node: int) -> dict:
    """Run the workers and wait for them: ``{rank: what _ddp_entry returned}`` (this node's)."""
    from torch.distributed.elastic.multiprocessing.errors import ChildFailedError
    from torch.distributed.launcher.api import elastic_launch

    threads = max(1, (os.cpu_count() or 1) // nproc_per_node)
    old_omp = os.environ.get("OMP_NUM_THREADS")
    os.environ["OMP_NUM_THREADS"] = str(threads)
    # Ctrl-C reaches every worker directly; they agree on it at the next step and checkpoint.
    # The launcher must outlive them instead of killing them first.
    old_sigint = (
        signal.signal(signal.SIGINT, signal.SIG_IGN) if threading.current_thread() is threading.main_thread() else None
    )
    try:
        return elastic_launch(config, _ddp_entry)(request)
    except ChildFailedError as exc:
        failures = "; ".join(
            f"rank {rank}: exit {f.exitcode}" + (f" ({str(f.message)[:300]})" if getattr(f, "message", None) else "")
            for rank, f in sorted(exc.failures.items())
        )
        raise RunFailed(
            f"distributed training failed: {failures}",
            hint="a worker or another node stopped; `nncli train --resume RUN` continues from the last checkpoint",
        ) from None
    finally:
        if old_sigint is not None:
            signal.signal(signal.SIGINT, old_sigint)
        if old_omp is None:
            os.environ.pop("OMP_NUM_THREADS", None)
        else:
            os.environ["OMP_NUM_THREADS"] = old_omp


def _rank0_answer(results: dict) -> TrainResult | None:
    """Rank 0's result, or its error raised here as the same kind; None on the other nodes."""
    answer = results.get(0)
    if answer is None:
        return None
    if "error" in answer:
        kinds = {"SpecError": SpecError, "InputError": InputError, "CheckFailed": CheckFailed}
        err = answer["error"]
        raise kinds.get(err["error"], NncliError)(
            err["message"],
            file=err.get("file"),
            line=err.get("line"),
            column=err.get("column"),
            spec_path=err.get("spec_path"),
            hint=err.get("hint"),
        )
    return TrainResult(**answer["result"])


def _die_with_launcher(launcher_pid: int | None) -> None:
    """Linux: the kernel kills this rank when its launcher dies, even by SIGKILL. A rank left
    running under PID 1 would keep the run folder locked (it shares the launcher's lock) and go
    on writing a run nobody watches."""
    try:
        import ctypes

        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, int(signal.SIGKILL))  # 1 = PR_SET_PDEATHSIG
    except (OSError, AttributeError):  # not Linux: no parent-death signal
        return
    if launcher_pid is not None and os.getppid() != launcher_pid:  # it died before prctl took effect
        os._exit(1)


def _ddp_entry(request: dict) -> dict:
    """One DDP worker (spawned by the elastic launcher). Returns plain data, picklable."""
    import torch.distributed as tdist

    _die_with_launcher(request.get("launcher_pid"))
    rank, world = int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"])
    local_rank = int(os.environ.get("LOCAL_RANK", 0))
    if request["device"] == "cuda":
        device = torch.device("cuda", request.get("device_index", 0) + local_rank)
        torch.cuda.set_device(device)
        backend = "nccl"
    else:
        device = torch.device("cpu")
        torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", "1")))
        backend = "gloo"
    tdist.init_process_group(backend=backend, rank=rank, world_size=world)
    try:
        try:
            # out_dir=None: the launcher already checked the folder, and rank 0 may be writing to it
            spec = None
            if request["spec_text"] is not None:  # the launcher's spec, exactly (it may not be a file)
                from nncli.spec import parse_spec

                origin = request["spec_path"]
                spec = parse_spec(
                    request["spec_text"], file=origin, base_dir=Path(origin).parent if origin else Path.cwd()
                )
            setup = prepare(
                spec,
                request["overrides"],
                None,
                resume=request["resume"],
                world_size=world,
                writer=request.get("writer", True),
            )
        except NncliError as err:
            return {"error": err.to_json()}
        if not request["resume"]:
            setup.run_dir = Path(request["out_dir"])
        factory = request["callbacks_factory"]
        callbacks = list(factory()) if factory is not None else []
        try:
            result = Trainer(
                setup,
                device,
                callbacks,
                dist=(rank, world),
                tensorboard=request["tensorboard"],
                sync_batchnorm=request["sync_batchnorm"],
            ).run()
        except NncliError as err:
            return {"error": err.to_json()}
        return {"result": asdict(result)}
    finally:
        tdist.destroy_process_group()
