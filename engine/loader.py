"""`DeviceLoader`: a split kept as uint8 on the device, cut, augmented and normalized a whole
batch at a time there (no per-image Python, no workers, no copy a step). Each epoch is drawn from
a generator seeded by (seed, epoch), so a resumed run sees the batches an uninterrupted one saw.
Under DDP every rank draws the same epoch and takes its contiguous part of each global batch."""

from __future__ import annotations

import torch

from engine.augment import REFLECT, check_preset, draw, float_steps, gather_crops, pad_images
from engine.errors import LabError


def rank_part(n: int, rank: int, world_size: int) -> slice:
    """Rank `rank`'s contiguous part of n items over `world_size` (sizes differ by at most one)."""
    return slice(n * rank // world_size, n * (rank + 1) // world_size)


class DeviceLoader:
    """(normalized float images, labels) batches of one split held on `device`."""

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
        smallest = min(batch_size, len(labels) % batch_size or batch_size)
        if smallest < world_size:
            raise LabError(
                f"a batch of {smallest} images cannot be shared by {world_size} processes; use "
                "fewer processes or change batch_size/train_subset"
            )
        self.device = torch.device(device)
        self.augment = check_preset(augment)
        self.memory_format = torch.channels_last if channels_last else torch.contiguous_format
        self.size = tuple(images.shape[-2:])
        images = images.to(self.device)
        if augment != "none":  # padded once: a batch's shuffle, crops and flips are one gather
            images = pad_images(images, augment in REFLECT)
        self.images = images.contiguous(memory_format=self.memory_format)
        self.labels = labels.to(self.device)
        self.num_images = len(labels)
        self.batch_size, self.shuffle, self.seed = batch_size, shuffle, seed
        self.rank, self.world_size = rank, world_size
        self.mean = torch.as_tensor(mean, dtype=torch.float32).to(self.device)
        self.std = torch.as_tensor(std, dtype=torch.float32).to(self.device)

    def __len__(self) -> int:
        return -(-self.num_images // self.batch_size)

    def _part(self, start: int) -> slice:
        """This rank's rows of the global batch that starts at `start`."""
        part = rank_part(min(self.batch_size, self.num_images - start), self.rank, self.world_size)
        return slice(start + part.start, start + part.stop)

    def batch_sizes(self) -> list[int]:
        """This rank's batch sizes in an epoch, each once, in order (full, then a last one)."""
        parts = (self._part(i * self.batch_size) for i in range(len(self)))
        return list(dict.fromkeys(p.stop - p.start for p in parts))

    def weight(self, i: int) -> float:
        """This rank's share of global batch `i` times the ranks: DDP's average of the ranks'
        weighted mean losses is then the global batch's mean."""
        s, start = self._part(i * self.batch_size), i * self.batch_size
        return (s.stop - s.start) * self.world_size / min(self.batch_size, self.num_images - start)

    def batches(self, epoch: int = 0):
        # Distinct, reproducible streams per (seed, epoch); the constant is a large prime.
        g = torch.Generator().manual_seed(self.seed * 1_000_003 + epoch)
        n = self.num_images
        order = torch.randperm(n, generator=g) if self.shuffle else torch.arange(n)
        order = order.to(self.device)
        # The whole epoch's crops, flips, ... in one draw; batch k uses rows k*bs..(k+1)*bs.
        draws = draw(self.augment, n, g, self.device, self.size)
        labels = self.labels[order]
        for start in range(0, n, self.batch_size):
            s = self._part(start)
            d = draws[s]
            if d.rows is None:
                images = self.images[order[s]]
            else:
                images = gather_crops(self.images, order[s], d.rows, d.cols)
            x = float_steps(images, self.mean, self.std, d, self.memory_format)
            # A no-op unless a step (rotation's grid_sample) returned the other layout.
            yield x.contiguous(memory_format=self.memory_format), labels[s]

    def __iter__(self):
        return self.batches(0)
