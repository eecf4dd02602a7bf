"""Distributed executor: one process per device over torch.distributed (gloo on CPU, NCCL on GPUs).

The official multi-GPU split (paper, Table 3): the caller's process is rank 0; it sends
the image to the ranks that need it, rank k runs the subgraphs placed on it (stream k with
its stem prefix), tensors that cross ranks travel point to point, and rank 0 runs the
fusion/head. Any placement of the manifest's DAG works the same way; every rank derives
its program (what to receive, run and send, in which order) from the same plan.

Two channels:

- control (run / stop) goes through the TCPStore, never through a collective: a worker waits
  for the next call as long as it likes, and NCCL's watchdog (which kills a rank waiting in a
  collective longer than the group's timeout) never sees an idle gap;
- data (the image, stream outputs) goes through the process group: gloo with CPU tensors, or
  NCCL with tensors that stay on the GPU. Runners that can take and return device tensors
  (:class:`~parnet_deploy.backends.base.DeviceRunner`: torch, TensorRT) are called with them;
  NCCL needs such runners, and nothing crosses ranks through the host.

Batch N: a dynamic-batch export (dim 0 bounded, ``min..max``) runs any batch within the bounds.
Rank 0 reads the call's batch from its feeds (outside the bounds: a UserError, before any rank
hears of the call) and sends it with the run message (``run:N``); every rank receives into
buffers sized for the largest batch once, as views of their first N rows.

Start-up: workers are spawned, join a TCPStore rendezvous on 127.0.0.1 and build their
sessions; on GPUs each rank makes its device current and connects its communicator to it
before the first call. Shutdown: a stop message, then each rank shuts its group down and
exits. A rank that dies makes the call raise within ``timeout_s`` (its exit is seen at the
next call, or the transfer fails or times out); the runner is then broken and says so.

Signals: workers run in their own session, so a terminal's Ctrl-C (SIGINT to the foreground
process group) reaches the caller only, and rank 0 decides: an idle runner goes on, an
interrupted call breaks it, and close() ends the workers. Workers ignore SIGINT, and each one
watches its caller: a worker whose caller died without closing it (SIGKILL, a crash) exits
within ``PARENT_POLL_S``; it is not left running in its own session.

This is the one part of the runtime that imports PyTorch (for torch.distributed), lazily: importing
the package, :mod:`.plan` or :mod:`.schedule` loads no PyTorch.

Modules: plan (RankPlan, device names), schedule (Transfer, schedule()), group (the process group),
program (one rank's part of a call), worker (a worker process), executor (rank 0).
"""

from ...errors import DistributedError
from .executor import DistributedExecutor
from .plan import RankPlan
from .program import _RankProgram
from .schedule import Transfer, schedule
from .worker import worker_main

__all__ = ["DistributedError", "DistributedExecutor", "RankPlan", "Transfer", "_RankProgram", "schedule", "worker_main"]
