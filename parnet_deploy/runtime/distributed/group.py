"""The torch.distributed process group that carries tensors (gloo on CPU, NCCL on GPUs): set-up
and shutdown. PyTorch is imported lazily, through :func:`_torch`."""

from __future__ import annotations

import datetime
import os

# Start-up spawns interpreters that import ONNX Runtime and build sessions: seconds, more on a
# loaded machine. It gets its own, longer deadline; timeout_s bounds each call.
STARTUP_TIMEOUT_S = 120.0
STARTUP = datetime.timedelta(seconds=STARTUP_TIMEOUT_S)  # also bounds the first (warm-up) call


def _torch():
    import torch
    import torch.distributed as dist

    return torch, dist


def _data_group(store, rank: int, world: int, device: str, timeout_s: float):
    """The process group that carries tensors. On a GPU the NCCL communicator is connected to the
    rank's device here (torch's ``device_id``), before any call; a worker also makes it current
    (rank 0, the caller's process, keeps its current device)."""
    torch, dist = _torch()
    prefixed = dist.PrefixStore("data/", store)
    startup = datetime.timedelta(seconds=max(timeout_s, STARTUP_TIMEOUT_S))
    if device.startswith("cuda"):  # pragma: no cover - needs GPUs
        # read when the group is made: wait(timeout) then blocks the CPU and raises on timeout, and
        # no watchdog runs (it would end the process instead of the call raising DistributedError)
        os.environ["TORCH_NCCL_BLOCKING_WAIT"] = "1"
        # every transfer is one send or recv in the schedule's order, on purpose: don't warn about it
        os.environ.setdefault("TORCH_NCCL_SHOW_EAGER_INIT_P2P_SERIALIZATION_WARNING", "0")
        gpu = torch.device(device)
        if rank != 0:
            torch.cuda.set_device(gpu)
        options = dist.ProcessGroupNCCL.Options()
        options._timeout = startup
        with torch.cuda.device(gpu):
            group = dist.ProcessGroupNCCL(prefixed, rank, world, options)
            group.eager_connect_single_device(gpu)
    else:
        group = dist.ProcessGroupGloo(prefixed, rank, world, startup)
    group.set_timeout(datetime.timedelta(seconds=timeout_s))  # rendezvous may take long; transfers may not
    return group


def _shutdown(group, abort: bool = False) -> None:
    """Release the communicators; ``abort`` when a peer is gone (a clean shutdown could wait for it)."""
    stop = getattr(group, "abort" if abort else "shutdown", None)
    if stop is not None:
        stop()
