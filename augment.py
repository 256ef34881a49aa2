"""Data augmentation presets, two ways: batched tensor ops (fast) and torchvision v2 (reference).

The fast path augments a whole uint8 batch at once where it lives (the GPU when there is one),
as the fastest public CIFAR-10 trainers do (airbench, Myrtle's DAWNBench ResNet). Random
parameters come from a seeded CPU `torch.Generator`, so a run is reproducible on any device.
The torchvision path builds the same preset from `torchvision.transforms.v2` for one image at a
time; tests check that both draw crops and flips from the same distribution.

Presets (each adds to `crop_flip`, the standard CIFAR recipe of He et al. 2015):
- none:             no augmentation (the handout's baseline)
- crop_flip:        random 32x32 crop of the image zero-padded by 4, horizontal flip p=0.5
- crop_flip_rotate: + rotation by a uniform angle in [-15, 15] degrees
- crop_flip_jitter: + colour jitter (brightness, contrast, saturation each +-20%)
- crop_flip_noise:  + Gaussian pixel noise, sigma 0.05 on the [0, 1] scale
- strong:           + cutout: one 16x16 square set to the mean (DeVries & Taylor 2017),
                    the same as torchvision's RandomErasing with a fixed 1/4-area square
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from errors import LabError

PRESETS = ("none", "crop_flip", "crop_flip_rotate", "crop_flip_jitter", "crop_flip_noise", "strong")
PAD = 4  # pixels of zero padding before the random crop
ROTATE_DEG = 15.0
JITTER = 0.2
NOISE_SIGMA = 0.05
CUTOUT = 16  # side of the cutout square, pixels


def check_preset(preset: str) -> str:
    if preset not in PRESETS:
        raise LabError(f"unknown augmentation {preset!r}; choose one of {', '.join(PRESETS)}")
    return preset


def _rand(n: int, g: torch.Generator, device) -> torch.Tensor:
    return torch.rand(n, generator=g).to(device, non_blocking=True)


def crop_flip(x: torch.Tensor, g: torch.Generator, pad: int = PAD) -> torch.Tensor:
    """Random crop of the zero-padded batch plus random horizontal flip, per image."""
    b, c, h, w = x.shape
    dev = x.device
    padded = F.pad(x, (pad, pad, pad, pad))
    dy = torch.randint(0, 2 * pad + 1, (b,), generator=g).to(dev, non_blocking=True)
    dx = torch.randint(0, 2 * pad + 1, (b,), generator=g).to(dev, non_blocking=True)
    flip = (torch.rand(b, generator=g) < 0.5).to(dev, non_blocking=True)
    rows = dy[:, None] + torch.arange(h, device=dev)[None, :]  # (b, h)
    cols = dx[:, None] + torch.arange(w, device=dev)[None, :]  # (b, w)
    # A flip reverses the columns that are read, so crop and flip are one gather.
    cols = torch.where(flip[:, None], cols.flip(1), cols)
    bi = torch.arange(b, device=dev)[:, None, None, None]
    ci = torch.arange(c, device=dev)[None, :, None, None]
    return padded[bi, ci, rows[:, None, :, None], cols[:, None, None, :]]


def rotate(x: torch.Tensor, g: torch.Generator, degrees: float = ROTATE_DEG) -> torch.Tensor:
    """Rotate each image about its centre by a uniform angle in [-degrees, degrees]; fill 0."""
    b = x.shape[0]
    theta = (_rand(b, g, x.device) * 2 - 1) * math.radians(degrees)
    cos, sin = theta.cos(), theta.sin()
    zero = torch.zeros_like(cos)
    mat = torch.stack([torch.stack([cos, -sin, zero], 1), torch.stack([sin, cos, zero], 1)], 1)
    grid = F.affine_grid(mat.to(x.dtype), list(x.shape), align_corners=False)
    return F.grid_sample(x, grid, mode="bilinear", padding_mode="zeros", align_corners=False)


def _gray(x: torch.Tensor) -> torch.Tensor:
    # ITU-R 601 luma, as torchvision's rgb_to_grayscale.
    return (0.299 * x[:, 0] + 0.587 * x[:, 1] + 0.114 * x[:, 2]).unsqueeze(1)


def color_jitter(x: torch.Tensor, g: torch.Generator, s: float = JITTER) -> torch.Tensor:
    """Brightness, contrast and saturation, each scaled by a factor uniform in [1-s, 1+s]."""
    b = x.shape[0]

    def factor() -> torch.Tensor:
        return (1 + (_rand(b, g, x.device) * 2 - 1) * s).view(b, 1, 1, 1).to(x.dtype)

    x = (x * factor()).clamp(0, 1)
    mean = _gray(x).mean(dim=(1, 2, 3), keepdim=True)
    x = (mean + factor() * (x - mean)).clamp(0, 1)
    gray = _gray(x)
    return (gray + factor() * (x - gray)).clamp(0, 1)


def gaussian_noise(x: torch.Tensor, g: torch.Generator, sigma: float = NOISE_SIGMA) -> torch.Tensor:
    noise = torch.randn(x.shape, generator=g).to(x.device, x.dtype, non_blocking=True)
    return (x + sigma * noise).clamp(0, 1)


def cutout(x: torch.Tensor, g: torch.Generator, size: int = CUTOUT) -> torch.Tensor:
    """Set one size x size square per image (fully inside it) to 0, i.e. to the mean."""
    b, _, h, w = x.shape
    top = torch.randint(0, h - size + 1, (b,), generator=g).to(x.device, non_blocking=True)
    left = torch.randint(0, w - size + 1, (b,), generator=g).to(x.device, non_blocking=True)
    r = torch.arange(h, device=x.device)[None, :, None]
    c = torch.arange(w, device=x.device)[None, None, :]
    inside = (r >= top[:, None, None]) & (r < top[:, None, None] + size)
    inside &= (c >= left[:, None, None]) & (c < left[:, None, None] + size)
    return x.masked_fill(inside[:, None], 0.0)


def augment_batch(
    images: torch.Tensor,
    preset: str,
    mean: torch.Tensor,
    std: torch.Tensor,
    g: torch.Generator | None = None,
) -> torch.Tensor:
    """uint8 (B, 3, H, W) -> augmented, normalized float32 batch on the same device.

    `mean`/`std` are (3,) tensors on the [0, 1] scale on the images' device. `g` drives every
    random choice; it may be None only for the `none` preset.
    """
    if preset != "none":
        assert g is not None, "a generator is needed for random augmentation"
        images = crop_flip(images, g)
    x = images.float().div_(255)
    if preset == "crop_flip_rotate":
        x = rotate(x, g)
    elif preset == "crop_flip_jitter":
        x = color_jitter(x, g)
    elif preset == "crop_flip_noise":
        x = gaussian_noise(x, g)
    x = (x - mean.view(1, -1, 1, 1)) / std.view(1, -1, 1, 1)
    if preset == "strong":
        x = cutout(x, g)
    return x


def torchvision_transform(preset: str, mean, std, pil: bool = False):
    """The same preset as a torchvision v2 pipeline for one uint8 (3, H, W) image tensor.

    With `pil=True` the geometric and colour steps run on a PIL Image, as in most lab handouts
    that use `torchvision.datasets.CIFAR10(transform=...)`.
    """
    from torchvision.transforms import v2

    check_preset(preset)
    steps = [v2.ToPILImage()] if pil else []
    if preset != "none":
        steps += [v2.RandomCrop(32, padding=PAD), v2.RandomHorizontalFlip()]
    if preset == "crop_flip_rotate":
        steps.append(v2.RandomRotation(ROTATE_DEG, interpolation=v2.InterpolationMode.BILINEAR))
    if preset == "crop_flip_jitter":
        steps.append(v2.ColorJitter(brightness=JITTER, contrast=JITTER, saturation=JITTER))
    steps += [v2.ToImage(), v2.ToDtype(torch.float32, scale=True)]
    if preset == "crop_flip_noise":
        steps.append(v2.GaussianNoise(sigma=NOISE_SIGMA))
    steps.append(v2.Normalize(list(mean), list(std)))
    if preset == "strong":
        area = CUTOUT * CUTOUT / (32 * 32)
        steps.append(v2.RandomErasing(p=1.0, scale=(area, area), ratio=(1.0, 1.0), value=0))
    return v2.Compose(steps)
