"""Training on several processes with torch.distributed (DistributedDataParallel), as torchrun starts them.

    torchrun --nproc-per-node 2 -m semhash.cli train CORPUS -o MODEL ...          # one machine
    torchrun --nnodes 2 --node-rank R --master-addr HOST --master-port 29500 \\
             --nproc-per-node 4 -m semhash.cli train CORPUS -o MODEL ...            # several machines

torchrun sets RANK, WORLD_SIZE, LOCAL_RANK and the rendezvous address; `start()` joins the process group
(gloo on the CPU, NCCL on CUDA GPUs). Every process reads the same seeded sample and fits the same
featurizer; the neighbour graph and diffusion targets are computed once, by rank 0, and broadcast; each
process then trains on its own shard of the rows and DDP averages the gradients, so all hold the same
model. Rank 0 alone writes it.
"""
from __future__ import annotations

import os

import numpy as np
import torch
import torch.distributed as dist


def requested() -> bool:
    """Whether this process was started by torchrun (or another launcher) as one of several."""
    return int(os.environ.get("WORLD_SIZE", "1")) > 1


def start() -> None:
    """Join the process group that torchrun's environment describes (once)."""
    if dist.is_initialized():
        return
    backend = "nccl" if torch.cuda.is_available() else "gloo"
    if backend == "nccl":
        torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
    dist.init_process_group(backend)


def stop() -> None:
    if dist.is_initialized():
        dist.destroy_process_group()


def active() -> bool:
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def rank() -> int:
    return dist.get_rank() if active() else 0


def world() -> int:
    return dist.get_world_size() if active() else 1


def device_for(device: torch.device) -> torch.device:
    """This process's device: its own GPU (LOCAL_RANK) when training on CUDA."""
    if active() and device.type == "cuda":
        return torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
    return device


def share(array: np.ndarray | None, dtype: np.dtype) -> np.ndarray:
    """Rank 0's array, on every process (the others pass None)."""
    comm = torch.device("cuda", torch.cuda.current_device()) if dist.get_backend() == "nccl" else torch.device("cpu")
    shape = torch.zeros(2, dtype=torch.int64, device=comm)
    if rank() == 0:
        shape[:] = torch.tensor(array.shape, dtype=torch.int64)
    dist.broadcast(shape, 0)
    buf = torch.zeros(tuple(shape.tolist()), dtype=torch.float64, device=comm)
    if rank() == 0:
        buf[:] = torch.from_numpy(np.asarray(array, dtype=np.float64))
    dist.broadcast(buf, 0)
    return buf.cpu().numpy().astype(dtype)
