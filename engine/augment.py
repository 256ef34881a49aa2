"""Augmentation presets, two ways: whole uint8 batches on the device, as airbench does (fast),
and torchvision v2 one image at a time (the reference; tests/test_augment.py checks they agree).
`draw` makes every random choice from one seeded CPU generator, so a seed gives the same crops,
flips, angles and squares on any device; `float_steps` is a pure function of images and draws.

Presets: `none` (the handout's); `crop_flip`, a random 32x32 crop of the image zero-padded by 4
and a horizontal flip (He et al. 2015), which the others extend: `_rotate` (+-15 degrees),
`_jitter` (brightness, contrast, saturation +-20%), `_noise` (Gaussian, sigma 0.05), `strong`
(a 16x16 cutout set to the mean, DeVries & Taylor 2017, always inside the image as torchvision's
RandomErasing), `crop_flip_cutout8` (Myrtle.ai's ResNet-18, 2018), `translate_flip_cutout12`
(reflection padding, a 12x12 cutout: airbench's ResNet-18 baseline, Jordan 2024).
"""

from __future__ import annotations

import dataclasses
import math

import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader, Dataset

from engine.errors import LabError

PAD = 4  # pixels of padding before the random crop
ROTATE_DEG = 15.0
JITTER = 0.2
NOISE_SIGMA = 0.05
CUTOUT = 16  # side of the strong preset's cutout square, pixels
CUTOUT_SIDE = {"strong": CUTOUT, "crop_flip_cutout8": 8, "translate_flip_cutout12": 12}
PRESETS = ("none", "crop_flip", "crop_flip_rotate", "crop_flip_jitter", "crop_flip_noise")
PRESETS += tuple(CUTOUT_SIDE)  # "strong", "crop_flip_cutout8", "translate_flip_cutout12"
REFLECT = ("translate_flip_cutout12",)  # presets whose crop pads by reflection, not zeros
LUMA = (0.2989, 0.587, 0.114)  # ITU-R 601 weights exactly as torchvision's rgb_to_grayscale


def check_preset(preset: str) -> str:
    if preset not in PRESETS:
        raise LabError(f"unknown augmentation {preset!r}; choose one of {', '.join(PRESETS)}")
    return preset


@dataclasses.dataclass
class Draws:
    """Every random choice of a preset for n images; a field is None when the preset skips it."""

    # The crop and flip, as the pixels they read: rows (n, H) and columns (n, W) of the padded
    # image. A flipped crop reads its columns right to left.
    rows: torch.Tensor | None = None
    cols: torch.Tensor | None = None
    angle: torch.Tensor | None = None  # (n,) float32: rotation, radians
    jitter: torch.Tensor | None = None  # (n, 3) float32: brightness, contrast, saturation factors
    corner: torch.Tensor | None = None  # (n, 2) int64: cutout square's top-left (row, col)
    cutout: int = CUTOUT  # side of the cutout square, pixels
    reflect: bool = False  # the crops read an image padded by reflection (pad_images)
    # Noise, 3,072 numbers an image, is drawn on the images' device by a generator seeded from the
    # CPU one: the same seed gives the same noise on the same kind of device.
    noise: torch.Generator | None = None

    def map(self, fn) -> Draws:
        tensors = {f: getattr(self, f) for f in ("rows", "cols", "angle", "jitter", "corner")}
        return dataclasses.replace(self, **{f: fn(t) for f, t in tensors.items() if t is not None})

    def __getitem__(self, s: slice) -> Draws:
        """Images s's draws. The noise generator is shared: slices are used in order."""
        return self.map(lambda t: t[s])


def draw(preset: str, n: int, g: torch.Generator | None, device="cpu", size=(32, 32)) -> Draws:
    """`preset`'s choices for `n` images of `size` (H, W) from the CPU generator `g`, on `device`."""
    d = Draws()
    if check_preset(preset) == "none":
        return d
    if g is None:
        raise ValueError(f"augmentation {preset!r} needs a torch.Generator")
    h, w = size
    offset = torch.randint(0, 2 * PAD + 1, (n, 2), generator=g)  # crop corner in the padded image
    flip = torch.rand(n, generator=g) < 0.5
    d.rows = offset[:, 0:1] + torch.arange(h)
    cols = offset[:, 1:2] + torch.arange(w)
    d.cols = torch.where(flip[:, None], cols.flip(1), cols)
    d.reflect = preset in REFLECT
    if preset == "crop_flip_rotate":
        d.angle = (torch.rand(n, generator=g) * 2 - 1) * math.radians(ROTATE_DEG)
    elif preset == "crop_flip_jitter":
        d.jitter = 1 + (torch.rand(n, 3, generator=g) * 2 - 1) * JITTER
    elif preset == "crop_flip_noise":
        seed = int(torch.randint(0, 2**62, (), generator=g))
        d.noise = torch.Generator(device=device).manual_seed(seed)
    elif preset in CUTOUT_SIDE:
        d.cutout = side = CUTOUT_SIDE[preset]
        top = torch.randint(0, h - side + 1, (n,), generator=g)
        left = torch.randint(0, w - side + 1, (n,), generator=g)
        d.corner = torch.stack([top, left], dim=1)
    return d.map(lambda t: t.to(device))


def pad_images(images: torch.Tensor, reflect: bool = False) -> torch.Tensor:
    """uint8 (N, C, H, W) padded by PAD: zeros, or F.pad's "reflect" done by indexing (uint8)."""
    if not reflect:
        return F.pad(images, (PAD, PAD, PAD, PAD))

    def index(n: int) -> torch.Tensor:
        i = torch.arange(-PAD, n + PAD, device=images.device).abs()
        return torch.where(i >= n, 2 * (n - 1) - i, i)

    h, w = images.shape[-2:]
    return images[:, :, index(h)][:, :, :, index(w)]


def gather_crops(padded: torch.Tensor, index, rows: torch.Tensor, cols: torch.Tensor):
    """Crop i: padded image index[i] at rows[i] x cols[i], so one gather shuffles, crops and flips
    (B, C, H, W), channels-last in memory."""
    crops = padded[index[:, None, None], :, rows[:, :, None], cols[:, None, :]]  # (B, H, W, C)
    return crops.permute(0, 3, 1, 2)


def rotate(x: torch.Tensor, angle: torch.Tensor) -> torch.Tensor:
    """Each image about its centre by `angle` radians (bilinear, corners 0)."""
    cos, sin = angle.cos(), angle.sin()
    zero = torch.zeros_like(cos)
    mat = torch.stack([torch.stack([cos, -sin, zero], 1), torch.stack([sin, cos, zero], 1)], 1)
    grid = F.affine_grid(mat.to(x.dtype), list(x.shape), align_corners=False)
    return F.grid_sample(x, grid, mode="bilinear", padding_mode="zeros", align_corners=False)


def _blend(x: torch.Tensor, other: torch.Tensor, factor: torch.Tensor) -> torch.Tensor:
    return (factor * x + (1 - factor) * other).clamp_(0, 1)  # torchvision's _blend, per image


def _gray(x: torch.Tensor) -> torch.Tensor:
    r, g, b = x.unbind(1)
    return (r * LUMA[0] + g * LUMA[1] + b * LUMA[2]).unsqueeze(1)


def color_jitter(x: torch.Tensor, factors: torch.Tensor) -> torch.Tensor:
    """torchvision's adjust_brightness, _contrast, _saturation by each image's (B, 3) `factors`,
    in a fixed order (ColorJitter's random order differs only by the clamping between steps)."""
    f = factors.to(x.dtype).view(-1, 3, 1, 1, 1).unbind(1)
    x = (x * f[0]).clamp_(0, 1)
    x = _blend(x, _gray(x).mean(dim=(1, 2, 3), keepdim=True), f[1])
    return _blend(x, _gray(x), f[2])


def cutout(x: torch.Tensor, corner: torch.Tensor, size: int = CUTOUT) -> torch.Tensor:
    """One size x size square per image, top-left at `corner` (row, col), set to 0."""
    top, left = corner[:, 0:1], corner[:, 1:2]  # (B, 1)
    r = torch.arange(x.shape[2], device=x.device)
    c = torch.arange(x.shape[3], device=x.device)
    rows = (r >= top) & (r < top + size)  # (B, H)
    cols = (c >= left) & (c < left + size)  # (B, W)
    return x.masked_fill((rows[:, :, None] & cols[:, None, :])[:, None], 0.0)


def float_steps(images, mean, std, d: Draws, memory_format=torch.contiguous_format) -> torch.Tensor:
    """After the crop: uint8 (B, 3, H, W) -> augmented, normalized float32, in the order of
    torchvision_transform (so `none` matches it bit for bit); mean/std (3,) on [0, 1]."""
    if images.dtype != torch.uint8:  # a float batch would be normalized in place below
        raise ValueError(f"expected uint8 images, got {images.dtype}")
    # the layout converted while a value is 1 byte; the float steps keep it
    x = images.contiguous(memory_format=memory_format).float().mul_(1.0 / 255)  # as v2.ToDtype
    if d.angle is not None:
        x = rotate(x, d.angle)
    if d.jitter is not None:
        x = color_jitter(x, d.jitter)
    if d.noise is not None:
        noise = torch.randn(x.shape, generator=d.noise, device=x.device, dtype=x.dtype)
        x = (x + NOISE_SIGMA * noise).clamp_(0, 1)
    x = x.sub_(mean.view(1, -1, 1, 1)).div_(std.view(1, -1, 1, 1))  # as v2.Normalize
    if d.corner is not None:  # after normalizing, as RandomErasing(value=0): 0 is the mean colour
        x = cutout(x, d.corner, d.cutout)
    return x


def augment_batch(images: torch.Tensor, preset: str, mean, std, g=None) -> torch.Tensor:
    """uint8 (B, 3, H, W) -> augmented, normalized float32; `g`: a CPU generator."""
    d = draw(preset, len(images), g, images.device, tuple(images.shape[-2:]))
    if d.rows is not None:
        index = torch.arange(len(images), device=images.device)
        images = gather_crops(pad_images(images, d.reflect), index, d.rows, d.cols)
    return float_steps(images, mean, std, d)


def torchvision_transform(preset: str, mean, std, pil: bool = False):
    """The preset as a torchvision v2 pipeline for one uint8 (3, H, W) image; with `pil`, the
    geometric and colour steps run on a PIL Image, as in most lab handouts."""
    from engine.runtime import torchvision

    torchvision()  # one line where torch and torchvision mismatch
    from torchvision.transforms import v2

    check_preset(preset)
    steps = [v2.ToPILImage()] if pil else []
    if preset != "none":
        mode = "reflect" if preset in REFLECT else "constant"
        steps += [v2.RandomCrop(32, padding=PAD, padding_mode=mode), v2.RandomHorizontalFlip()]
    if preset == "crop_flip_rotate":
        steps.append(v2.RandomRotation(ROTATE_DEG, interpolation=v2.InterpolationMode.BILINEAR))
    if preset == "crop_flip_jitter":
        steps.append(v2.ColorJitter(brightness=JITTER, contrast=JITTER, saturation=JITTER))
    steps += [v2.ToImage(), v2.ToDtype(torch.float32, scale=True)]
    if preset == "crop_flip_noise":
        steps.append(v2.GaussianNoise(sigma=NOISE_SIGMA))
    steps.append(v2.Normalize(list(mean), list(std)))
    if preset in CUTOUT_SIDE:
        area = CUTOUT_SIDE[preset] ** 2 / (32 * 32)
        steps.append(v2.RandomErasing(p=1.0, scale=(area, area), ratio=(1.0, 1.0), value=0))
    return v2.Compose(steps)


class TensorImages(Dataset):
    """uint8 (N, 3, H, W) images + labels as a map-style Dataset with a per-image transform."""

    def __init__(self, images: torch.Tensor, labels: torch.Tensor, transform) -> None:
        self.images, self.labels, self.transform = images, labels, transform

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, i: int):
        return self.transform(self.images[i]), int(self.labels[i])


def torchvision_loader(
    images, labels, batch_size, mean, std, augment="none", pil=False, seed=0, **kw
) -> DataLoader:
    """A DataLoader transforming one image at a time; `kw` (shuffle, num_workers) go to it."""
    dataset = TensorImages(images, labels, torchvision_transform(augment, mean, std, pil=pil))
    generator, persistent = torch.Generator().manual_seed(seed), kw.get("num_workers", 0) > 0
    return DataLoader(dataset, batch_size, generator=generator, persistent_workers=persistent, **kw)
