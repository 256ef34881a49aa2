"""Batches for training and evaluation: the fast on-device path and the torchvision path.

`DeviceLoader` keeps a split as one uint8 tensor on the training device and cuts, augments and
normalizes whole batches there: no per-image Python, no worker processes, and no host->device
copy per step. The epoch's order and random draws go over once, at its start (a copy from
pageable host memory may block the CPU until the GPU has done the work queued before it, and
then the CPU cannot queue the next steps while the GPU works). A batch is then a handful of
small kernels: one gather (shuffle, crop and flip together), the conversion to float, the
normalization. `torchvision_loader` is the textbook DataLoader + per-image transforms path,
kept for comparison (bench.py) and for anyone who wants to add a PIL-only transform.

Both reshuffle each epoch from a generator seeded by (seed, epoch), so epoch k's batches do not
depend on what ran before it: a resumed run sees exactly the batches an uninterrupted one saw.

Under DDP (engine/distributed.py) every rank draws the same epoch (order and augmentation) and
takes its own contiguous part of each global batch, so the ranks' parts make up exactly the batch
one process would train on, whatever the number of ranks.
"""

from __future__ import annotations

from collections.abc import Iterator

import torch
from torch.utils.data import DataLoader, Dataset

from engine.augment import (
    PAD,
    REFLECT,
    check_preset,
    draw,
    float_steps,
    gather_crops,
    pad_images,
    torchvision_transform,
)
from engine.errors import LabError


def rank_part(n: int, rank: int, world_size: int) -> slice:
    """Rank `rank`'s contiguous part of n items shared by `world_size` processes (sizes differ
    by at most one; all of them for one process)."""
    return slice(n * rank // world_size, n * (rank + 1) // world_size)


def epoch_generator(seed: int, epoch: int) -> torch.Generator:
    # Distinct, reproducible streams per (seed, epoch); the constant is an arbitrary large prime.
    return torch.Generator().manual_seed(seed * 1_000_003 + epoch)


class DeviceLoader:
    """Yield (normalized float images, labels) batches of one split held on `device`."""

    def __init__(
        self,
        images: torch.Tensor,
        labels: torch.Tensor,
        batch_size: int,
        mean,
        std,
        device: torch.device | str = "cpu",
        augment: str = "none",
        shuffle: bool = False,
        seed: int = 0,
        channels_last: bool = False,
        rank: int = 0,
        world_size: int = 1,
    ) -> None:
        if batch_size <= 0:
            raise LabError(f"batch size must be positive, got {batch_size}")
        smallest = min(batch_size, len(labels) % batch_size or batch_size)
        if smallest < world_size:
            raise LabError(
                f"a batch of {smallest} images cannot be shared by {world_size} processes; use "
                "fewer processes or change batch_size/train_subset"
            )
        if images.dtype != torch.uint8:
            raise LabError(f"DeviceLoader takes uint8 images (0..255), got {images.dtype}")
        self.device = torch.device(device)
        self.augment = check_preset(augment)
        self.memory_format = torch.channels_last if channels_last else torch.contiguous_format
        images = images.to(self.device)
        if self.augment == "none":
            self.padded = None
            self.images = images.contiguous(memory_format=self.memory_format)
        else:
            # Padded once here rather than every batch, so that a batch's shuffle, crops and
            # flips are one gather from this tensor (1.56x the images' memory, 216 MB for 45,000).
            self.padded = pad_images(images, self.augment in REFLECT).contiguous(
                memory_format=self.memory_format
            )
            self.images = self.padded[:, :, PAD:-PAD, PAD:-PAD]  # the images themselves: a view
        self.labels = labels.to(self.device)
        self.batch_size = batch_size
        self.mean = torch.as_tensor(mean, dtype=torch.float32).to(self.device)
        self.std = torch.as_tensor(std, dtype=torch.float32).to(self.device)
        self.shuffle = shuffle
        self.seed = seed
        self.channels_last = channels_last
        self.rank, self.world_size = rank, world_size

    def __len__(self) -> int:
        return -(-len(self.labels) // self.batch_size)

    def batch_sizes(self) -> list[int]:
        """This rank's batch sizes in an epoch, each once, in order (full, then a last one)."""
        parts = (self._part(i * self.batch_size) for i in range(len(self)))
        return list(dict.fromkeys(p.stop - p.start for p in parts))

    @property
    def num_images(self) -> int:
        return len(self.labels)

    def _part(self, start: int) -> slice:
        """This rank's rows of the global batch that starts at `start` (all of them alone)."""
        part = rank_part(min(self.batch_size, self.num_images - start), self.rank, self.world_size)
        return slice(start + part.start, start + part.stop)

    def weight(self, i: int) -> float:
        """What this rank's mean loss on batch `i` counts for when DDP averages the ranks'
        gradients: its share of the global batch times the number of ranks, so that the average
        is the global batch's mean (1.0 for equal shares and for one process)."""
        s = self._part(i * self.batch_size)
        n = min(self.batch_size, self.num_images - i * self.batch_size)
        return (s.stop - s.start) * self.world_size / n

    def batches(self, epoch: int = 0) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        g = epoch_generator(self.seed, epoch)
        n = self.num_images
        order = torch.randperm(n, generator=g).to(self.device) if self.shuffle else None
        # The whole epoch's crops, flips, ... in one draw; batch k uses rows k*bs..(k+1)*bs.
        draws = draw(self.augment, n, g, self.device, tuple(self.images.shape[-2:]))
        labels = self.labels if order is None else self.labels[order]
        if self.padded is not None and order is None:
            order = torch.arange(n, device=self.device)
        for start in range(0, n, self.batch_size):
            s = self._part(start)
            d = draws[s]
            if self.padded is not None:
                images = gather_crops(self.padded, order[s], d.rows, d.cols)
            else:
                images = self.images[s] if order is None else self.images[order[s]]
            x = float_steps(images, self.mean, self.std, d, self.memory_format)
            # A no-op unless a step (rotation's grid_sample) returned the other layout.
            yield x.contiguous(memory_format=self.memory_format), labels[s]

    def __iter__(self):
        return self.batches(0)


class TensorImages(Dataset):
    """uint8 (N, 3, H, W) images + labels as a map-style Dataset with a per-image transform."""

    def __init__(self, images: torch.Tensor, labels: torch.Tensor, transform=None) -> None:
        self.images, self.labels, self.transform = images, labels, transform

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, i: int):
        x = self.images[i]
        if self.transform is not None:
            x = self.transform(x)
        return x, int(self.labels[i])


def torchvision_loader(
    images: torch.Tensor,
    labels: torch.Tensor,
    batch_size: int,
    mean,
    std,
    augment: str = "none",
    shuffle: bool = False,
    seed: int = 0,
    num_workers: int = 0,
    pil: bool = False,
) -> DataLoader:
    """The textbook path: a DataLoader applying torchvision v2 transforms one image at a time.

    With `pil=True` each image goes through a PIL Image first, as in most lab handouts that use
    `torchvision.datasets.CIFAR10(transform=...)`.
    """
    transform = torchvision_transform(augment, mean, std, pil=pil)
    return DataLoader(
        TensorImages(images, labels, transform),
        batch_size=batch_size,
        shuffle=shuffle,
        num_workers=num_workers,
        generator=torch.Generator().manual_seed(seed),
        persistent_workers=num_workers > 0,
    )
