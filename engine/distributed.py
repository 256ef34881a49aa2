"""torchrun's processes (RANK, LOCAL_RANK, WORLD_SIZE), used one of two ways:

- `ddp` (the default): all ranks train one run in DistributedDataParallel, each on its part of
  every global batch (engine/loader.py); evaluation is split over the ranks and summed. Rank 0
  alone prints and writes, and sends a resumed checkpoint to the others. Per-rank BatchNorm trains
  like one process with N "ghost batches" (Hoffer et al. 2017); `sync_bn` (CUDA) does not.
- `runs`: rank r trains runs r, r+N, ... alone on cuda:LOCAL_RANK; no process group, so a rank
  that dies loses only its run.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist
from torch.nn.parallel import DistributedDataParallel

from engine.errors import LabError
from engine.loader import rank_part

MODES = ("ddp", "runs")


@dataclass
class World:
    """This process's place among the ranks, and how one run is spread over them."""

    rank: int = 0
    size: int = 1
    backend: str | None = None  # the process group's, when the ranks share a run (DDP)
    sync_bn: bool = False  # SyncBatchNorm instead of per-rank BatchNorm

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def ddp(self) -> bool:
        return self.backend is not None

    @property
    def helper(self) -> bool:
        """A DDP rank other than 0: it trains, and prints and writes nothing."""
        return self.ddp and not self.is_main

    def record(self) -> dict:
        if self.ddp:
            return {"world_size": self.size, "backend": self.backend, "sync_bn": self.sync_bn}
        return {"world_size": 1, "backend": None}

    def loader_args(self) -> dict:
        return {"rank": self.rank, "world_size": self.size} if self.ddp else {}

    def part(self, n: int) -> slice:
        """This rank's contiguous part of n items under DDP; all of them otherwise."""
        return rank_part(n, self.rank, self.size) if self.ddp else slice(0, n)

    def sum(self, t: torch.Tensor) -> torch.Tensor:
        """`t` summed over the ranks, as a new tensor (`t` itself for one process)."""
        if self.ddp:
            dist.all_reduce(t := t.clone())
        return t

    def from_main(self, obj):
        """Rank 0's picklable `obj` (tensors on the CPU) on every rank."""
        box = [obj]
        if self.ddp:
            dist.broadcast_object_list(box, src=0)
        return box[0]

    def sync_buffers(self, model: torch.nn.Module) -> None:
        """Rank 0's BN statistics on every rank, to evaluate one model (DDP does it in training)."""
        for b in model.buffers() if self.ddp else ():
            dist.broadcast(b, src=0)

    def prepare(self, model: torch.nn.Module) -> torch.nn.Module:
        """The model to train and checkpoint: with `sync_bn`, its BN layers are SyncBatchNorm."""
        if self.ddp and self.sync_bn:
            return torch.nn.SyncBatchNorm.convert_sync_batchnorm(model)
        return model

    def wrap(self, model: torch.nn.Module) -> torch.nn.Module:
        """What a training step runs through: DDP around `model` (checkpoints save `model`'s
        state_dict, without DDP's `module.` prefix), or `model` itself."""
        device = next(model.parameters()).device
        ids = [device.index] if device.type == "cuda" else None
        return DistributedDataParallel(model, device_ids=ids) if self.ddp else model


def start(mode: str | None, device, sync_bn: bool = False) -> tuple[World, torch.device]:
    """This process's World and device from torchrun's environment; `ddp` forms the group."""
    device = torch.device(device)
    ddp = "WORLD_SIZE" in os.environ and mode != "runs"
    if sync_bn and not (ddp and device.type == "cuda"):
        raise LabError("--sync-bn needs one run over several GPUs (torchrun, --distribute ddp)")
    if "WORLD_SIZE" not in os.environ:
        return World(), device
    rank, size = int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"])
    if device.type == "cuda":
        local = int(os.environ.get("LOCAL_RANK", rank))
        if local >= torch.cuda.device_count():
            raise LabError(
                f"local rank {local} has no GPU ({torch.cuda.device_count()} visible); start "
                "at most one process per GPU (--nproc-per-node)"
            )
        device = torch.device("cuda", local)
        torch.cuda.set_device(device)
    if not ddp:
        return World(rank, size), device
    backend = "nccl" if device.type == "cuda" else "gloo"
    if not dist.is_initialized():
        dist.init_process_group(backend)
    return World(rank, size, backend, sync_bn), device


def stop() -> None:
    """Leave the group together: a rank tearing down while another is still in gloo's last
    exchange can abort at exit."""
    if dist.is_initialized():
        dist.barrier()
        dist.destroy_process_group()
