"""Several processes through PyTorch's own engine: `torch.distributed`, launched by `torchrun`.

torchrun starts N copies of a command and gives each one RANK, LOCAL_RANK and WORLD_SIZE (and
MASTER_ADDR/MASTER_PORT to meet at). experiments.py uses them in one of two ways:

- `ddp` (the default under torchrun): all ranks train the same run, each with its own copy of
  the model wrapped in DistributedDataParallel. Each rank takes a disjoint part of every global
  batch (engine/loader.py), so the global batch is the configured batch size and a seed gives
  the order it gives one process; DDP averages the gradients over the ranks during backward.
  Validation and test images are split over the ranks and the sums added up. Rank 0 alone prints
  the lab's lines and reads and writes checkpoints and results; on a resume it sends the
  checkpoint to the others, so the ranks need not share a file system.
- `runs`: the grid's (experiment, seed) runs are dealt out, rank r taking runs r, r+N, r+2N, ...
  Each trains alone on its own device (cuda:LOCAL_RANK), as one process would. No process group
  is formed, so the ranks never wait for each other, and a rank that dies loses only the run it
  was in (its checkpoints stay for --resume).

BatchNorm under DDP normalizes each rank's part of the batch with that part's own statistics, so
N ranks train like one process whose batches are cut into N "ghost batches" (Hoffer et al.
2017), and DDP copies rank 0's running statistics to the others before each forward pass.
`sync_bn` swaps in torch's SyncBatchNorm (CUDA only), which normalizes over the global batch as
one process does, at the cost of one more all-reduce per BN layer.

Without torchrun (no WORLD_SIZE in the environment) there is one process and nothing here acts.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist
from torch.nn.parallel import DistributedDataParallel

from engine.errors import LabError
from engine.loader import rank_part
from engine.runtime import pick_device

MODES = ("ddp", "runs")


@dataclass
class World:
    """This process's place among the ranks, and how one run is spread over them."""

    rank: int = 0
    size: int = 1
    local_rank: int = 0
    backend: str | None = None  # the process group's backend when the ranks share a run (DDP)
    sync_bn: bool = False  # SyncBatchNorm instead of per-rank BatchNorm (DDP on CUDA)

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def ddp(self) -> bool:
        return self.backend is not None

    @property
    def helper(self) -> bool:
        """A DDP rank other than 0: it trains beside rank 0, and prints and writes nothing."""
        return self.ddp and not self.is_main

    def record(self) -> dict:
        """Saved with a run's results: how many processes trained it, and how."""
        rec = {"world_size": self.size if self.ddp else 1, "backend": self.backend}
        if self.ddp:
            rec["sync_bn"] = self.sync_bn
        return rec

    def loader_args(self) -> dict:
        """How a training DeviceLoader shares each batch: among the DDP ranks, or not at all."""
        return {"rank": self.rank, "world_size": self.size} if self.ddp else {}

    def part(self, n: int) -> slice:
        """This rank's contiguous part of n items under DDP (sizes differ by at most one); all
        of them otherwise."""
        return rank_part(n, self.rank, self.size) if self.ddp else slice(0, n)

    def sum(self, t: torch.Tensor) -> torch.Tensor:
        """`t` summed over the ranks, as a new tensor (`t` itself for one process)."""
        if not self.ddp:
            return t
        t = t.clone()
        dist.all_reduce(t)
        return t

    def from_main(self, obj):
        """Rank 0's `obj` on every rank (picklable objects; tensors should be on the CPU)."""
        if not self.ddp:
            return obj
        box = [obj]
        dist.broadcast_object_list(box, src=0)
        return box[0]

    def sync_buffers(self, model: torch.nn.Module) -> None:
        """Copy rank 0's buffers (BN running statistics) to every rank, so that every rank
        evaluates the same model. DDP does this itself before each training forward pass."""
        if self.ddp:
            for b in model.buffers():
                dist.broadcast(b, src=0)

    def prepare(self, model: torch.nn.Module) -> torch.nn.Module:
        """The model to train and checkpoint: with `sync_bn`, its BN layers become SyncBatchNorm
        (same parameters, buffers and state_dict keys)."""
        if self.ddp and self.sync_bn:
            return torch.nn.SyncBatchNorm.convert_sync_batchnorm(model)
        return model

    def wrap(self, model: torch.nn.Module) -> torch.nn.Module:
        """What a training step runs through: DDP around `model` (which keeps the weights that
        checkpoints save, without DDP's `module.` prefix), or `model` itself."""
        if not self.ddp:
            return model
        device = next(model.parameters()).device
        ids = [device.index] if device.type == "cuda" else None
        return DistributedDataParallel(model, device_ids=ids)


def launched() -> bool:
    """Whether torchrun (or another launcher with its environment) started this process."""
    return "WORLD_SIZE" in os.environ


def start(mode: str | None, device=None, sync_bn: bool = False) -> tuple[World, torch.device]:
    """This process's World and device from torchrun's environment; for `ddp` (the default) the
    process group is formed: nccl on CUDA, gloo on the CPU."""
    mode = mode or "ddp"
    if mode not in MODES:
        raise LabError(f"unknown --distribute {mode!r}; choose ddp or runs")
    device = pick_device(device)
    if not launched():
        if sync_bn:
            raise LabError("--sync-bn needs several processes; launch with torchrun")
        return World(), device
    try:
        rank, size = int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"])
        local = int(os.environ.get("LOCAL_RANK", rank))
    except (KeyError, ValueError):
        raise LabError(
            "WORLD_SIZE is set but RANK is not an integer; launch with torchrun"
        ) from None
    if device.type == "cuda":
        if local >= torch.cuda.device_count():
            raise LabError(
                f"local rank {local} has no GPU ({torch.cuda.device_count()} visible); start "
                "at most one process per GPU (--nproc-per-node)"
            )
        device = torch.device("cuda", local)
        torch.cuda.set_device(device)
    if mode == "runs":
        if sync_bn:
            raise LabError(
                "--sync-bn applies to one run over several processes, not to --distribute runs"
            )
        return World(rank, size, local), device
    if sync_bn and device.type != "cuda":
        raise LabError("SyncBatchNorm runs on CUDA only; drop --sync-bn on the CPU")
    backend = "nccl" if device.type == "cuda" else "gloo"
    if not dist.is_initialized():
        dist.init_process_group(backend)
    return World(rank, size, local, backend, sync_bn), device


def stop() -> None:
    if dist.is_initialized():
        dist.destroy_process_group()


def my_runs(pairs: list, world: World) -> list:
    """`--distribute runs`: rank r's share of the (experiment, seed) list, every N-th from r."""
    return pairs[world.rank :: world.size]
