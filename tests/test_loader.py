"""Tests for loader.py: DeviceLoader's epochs (coverage, order, seeding, batch sizes, layout,
errors) and its agreement with the torchvision DataLoader path. Small synthetic uint8 tensors,
plus one check on the real CIFAR-10 where it is available."""

import math

import pytest
import torch
import torch.nn.functional as F

from engine.augment import PRESETS, torchvision_loader
from engine.errors import LabError
from engine.loader import DeviceLoader

ZERO, ONE = (0.0, 0.0, 0.0), (1.0, 1.0, 1.0)


def numbered(n: int) -> tuple[torch.Tensor, torch.Tensor]:
    """n images, each filled with its own index (mod 256), and labels = the indices."""
    images = (torch.arange(n) % 256).to(torch.uint8).view(n, 1, 1, 1).expand(n, 3, 8, 8)
    return images.contiguous(), torch.arange(n)


def loader(n: int = 103, batch_size: int = 16, **kw) -> DeviceLoader:
    images, labels = numbered(n)
    return DeviceLoader(images, labels, batch_size, ZERO, ONE, **kw)


def epoch(dl: DeviceLoader, k: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    xs, ys = zip(*dl.batches(k))
    return torch.cat(xs), torch.cat(ys)


def test_shuffle_covers_every_image_once_and_keeps_pairs() -> None:
    dl = loader(shuffle=True, seed=1)
    x, y = epoch(dl)
    assert torch.equal(y.sort().values, torch.arange(103))
    # Each image still travels with its own label (unaugmented, mean 0, std 1: x = index / 255).
    assert torch.equal((x[:, 0, 0, 0] * 255).round().long(), y % 256)


@pytest.mark.parametrize("channels_last", [False, True])
def test_crops_come_from_their_own_image(channels_last: bool) -> None:
    # Image k: channel 0 = row + 1, channel 1 = column + 1, channel 2 = k. Every output must be
    # a crop of its own image zero-padded by 4 (mirrored or not), at an offset in 0..8.
    n = 200
    r = torch.arange(1, 33).view(1, 32, 1).expand(n, 32, 32)
    c = torch.arange(1, 33).view(1, 1, 32).expand(n, 32, 32)
    k = torch.arange(n).view(n, 1, 1).expand(n, 32, 32)
    images = torch.stack([r, c, k], dim=1).to(torch.uint8)
    dl = DeviceLoader(
        images,
        torch.arange(n),
        64,
        ZERO,
        ONE,
        augment="crop_flip",
        shuffle=True,
        seed=3,
        channels_last=channels_last,
    )
    padded = F.pad(images, (4, 4, 4, 4))
    offsets = set()
    for x, y in dl.batches(0):
        px = (x * 255).round().to(torch.uint8)
        for img, label in zip(px, y.tolist()):
            flipped = bool(img[1, 16, 17] < img[1, 16, 16])
            dy = int(img[0, 16, 16]) - 1 - 12
            dx = int(img[1, 16, 16]) - 1 - (11 if flipped else 12)
            crop = padded[label, :, dy : dy + 32, dx : dx + 32]
            assert torch.equal(img, crop.flip(2) if flipped else crop)
            offsets.add((dy, dx))
    assert offsets <= {(i, j) for i in range(9) for j in range(9)} and len(offsets) > 60


def test_epochs_differ_and_replay() -> None:
    dl = loader(shuffle=True, seed=1)
    orders = [epoch(dl, k)[1] for k in range(3)]
    assert not torch.equal(orders[0], orders[1]) and not torch.equal(orders[1], orders[2])
    assert torch.equal(epoch(dl, 1)[1], orders[1])  # the same (seed, epoch) again
    assert not torch.equal(epoch(loader(shuffle=True, seed=2), 1)[1], orders[1])


@pytest.mark.parametrize("preset", [p for p in PRESETS if p != "none"])
def test_same_seed_and_epoch_same_batches(preset: str) -> None:
    g = torch.Generator().manual_seed(0)
    images = torch.randint(0, 256, (40, 3, 32, 32), dtype=torch.uint8, generator=g)
    labels = torch.arange(40)

    def run(seed: int, k: int):
        dl = DeviceLoader(images, labels, 16, ZERO, ONE, augment=preset, shuffle=True, seed=seed)
        return epoch(dl, k)

    (xa, ya), (xb, yb) = run(0, 2), run(0, 2)
    assert torch.equal(xa, xb) and torch.equal(ya, yb)
    assert not torch.equal(run(0, 3)[0], xa)
    assert not torch.equal(run(1, 2)[0], xa)


def test_resumed_epoch_sees_the_same_batches() -> None:
    # Epoch 3 must not depend on whether epochs 0-2 ran in this process (resume after a crash).
    images = torch.randint(0, 256, (40, 3, 32, 32), dtype=torch.uint8)
    labels = torch.arange(40)
    kw = dict(augment="crop_flip_noise", shuffle=True, seed=7)
    first = DeviceLoader(images, labels, 16, ZERO, ONE, **kw)
    for k in range(3):
        epoch(first, k)
    fresh = DeviceLoader(images, labels, 16, ZERO, ONE, **kw)
    assert torch.equal(epoch(first, 3)[0], epoch(fresh, 3)[0])


@pytest.mark.parametrize(("n", "batch_size"), [(103, 16), (96, 16), (5, 16), (1, 1), (17, 17)])
def test_batch_count_and_last_partial_batch(n: int, batch_size: int) -> None:
    dl = loader(n, batch_size, shuffle=True)
    sizes = [len(y) for _, y in dl.batches(0)]
    assert len(dl) == len(sizes) == math.ceil(n / batch_size)
    assert sizes[:-1] == [batch_size] * (len(sizes) - 1)
    assert sizes[-1] == n - batch_size * (len(sizes) - 1)
    assert dl.num_images == n


def test_without_shuffle_in_order_and_iter_is_epoch_zero() -> None:
    dl = loader(shuffle=False)
    x, y = epoch(dl)
    assert torch.equal(y, torch.arange(103))
    assert torch.equal(torch.cat([b for _, b in dl]), y)


@pytest.mark.parametrize("preset", PRESETS)
@pytest.mark.parametrize("channels_last", [False, True])
def test_channels_last_flag(preset: str, channels_last: bool) -> None:
    images = torch.randint(0, 256, (20, 3, 32, 32), dtype=torch.uint8)
    dl = DeviceLoader(
        images,
        torch.arange(20),
        8,
        ZERO,
        ONE,
        augment=preset,
        shuffle=True,
        channels_last=channels_last,
    )
    fmt = torch.channels_last if channels_last else torch.contiguous_format
    for x, _ in dl.batches(0):
        assert x.is_contiguous(memory_format=fmt)
        assert x.dtype == torch.float32 and x.shape[1:] == (3, 32, 32)


def test_dataset_not_changed_in_place() -> None:
    images, labels = numbered(20)
    before = images.clone()
    dl = DeviceLoader(images, labels, 8, (0.5,) * 3, (0.25,) * 3)
    epoch(dl)
    assert torch.equal(images, before)


def test_attributes() -> None:
    dl = loader(device="cpu")
    assert dl.device == torch.device("cpu") and dl.images.device == dl.device


def test_unknown_augmentation() -> None:
    with pytest.raises(LabError, match="crop_flip"):
        loader(augment="flip")


def test_torchvision_loader_batches_and_seed() -> None:
    images, labels = numbered(50)

    def labels_of(seed: int) -> torch.Tensor:
        dl = torchvision_loader(
            images, labels, 16, ZERO, ONE, augment="none", shuffle=True, seed=seed
        )
        return torch.cat([y for _, y in dl])

    assert torch.equal(labels_of(0).sort().values, labels)
    assert torch.equal(labels_of(0), labels_of(0)) and not torch.equal(labels_of(0), labels_of(1))


def test_matches_torchvision_dataloader_on_cifar(cifar) -> None:
    # The fast path and the textbook PIL path give the same unaugmented batches of real images.
    n, mean, std = 300, (0.49, 0.48, 0.45), (0.25, 0.24, 0.26)
    images, labels = cifar.train_images[:n], cifar.train_labels[:n]
    fast = DeviceLoader(images, labels, 128, mean, std)
    slow = torchvision_loader(images, labels, 128, mean, std, pil=True)
    for (xa, ya), (xb, yb) in zip(fast, slow, strict=True):
        assert torch.equal(ya, yb)
        assert torch.equal(xa, xb)
