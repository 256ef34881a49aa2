"""Batches for training and evaluation: the fast on-device path and the torchvision path.

`DeviceLoader` keeps a split as one uint8 tensor on the training device and cuts, augments
and normalizes whole batches there (no per-image Python, no worker processes, no host->device
copy per step). `torchvision_loader` is the textbook DataLoader + per-image transforms path,
kept for comparison (bench.py) and for anyone who wants to add a PIL-only transform.

Both reshuffle each epoch from a generator seeded by (seed, epoch), so epoch k's batches do not
depend on what ran before it: a resumed run sees exactly the batches an uninterrupted one saw.
"""

from __future__ import annotations

from collections.abc import Iterator

import torch
from torch.utils.data import DataLoader, Dataset

from augment import augment_batch, check_preset, torchvision_transform


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
    ) -> None:
        if batch_size <= 0:
            raise ValueError(f"batch size must be positive, got {batch_size}")
        self.images = images.to(device)
        self.labels = labels.to(device)
        self.batch_size = batch_size
        self.device = torch.device(device)
        self.mean = torch.tensor(mean, dtype=torch.float32, device=device)
        self.std = torch.tensor(std, dtype=torch.float32, device=device)
        self.augment = check_preset(augment)
        self.shuffle = shuffle
        self.seed = seed
        self.channels_last = channels_last

    def __len__(self) -> int:
        return -(-len(self.labels) // self.batch_size)

    @property
    def num_images(self) -> int:
        return len(self.labels)

    def batches(self, epoch: int = 0) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        g = epoch_generator(self.seed, epoch)
        n = len(self.labels)
        if self.shuffle:
            order = torch.randperm(n, generator=g).to(self.device, non_blocking=True)
        else:
            order = torch.arange(n, device=self.device)
        for start in range(0, n, self.batch_size):
            idx = order[start : start + self.batch_size]
            x = augment_batch(self.images[idx], self.augment, self.mean, self.std, g)
            if self.channels_last:
                x = x.contiguous(memory_format=torch.channels_last)
            yield x, self.labels[idx]

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
