"""Data augmentation presets, two ways: batched tensor ops (fast) and torchvision v2 (reference).

The fast path augments a whole uint8 batch at once where it lives (the GPU when there is one),
as the fastest public CIFAR-10 trainers do (airbench, Myrtle's DAWNBench ResNet). It works in
two steps: `draw` makes every random choice for n images on the CPU from one seeded
`torch.Generator`, so a seed gives the same crops, flips, angles and squares on any device;
`apply` is then a pure function of the images and those draws: one gather for the crops and
flips, then the float steps. `augment_batch` does both for one batch; `loader.DeviceLoader`
draws a whole epoch at once, so the device gets one small copy per epoch, not several per batch,
and a batch costs a handful of kernels (which matters when the GPU waits on kernel launches, as
it does for a ResNet18 on 32x32 images at these batch sizes: see bench.py).

The torchvision path builds the same preset from `torchvision.transforms.v2` for one image at a
time; tests/test_augment.py checks that both draw crops and flips from the same distribution
and that `none` gives the same tensors bit for bit.

Presets (each adds to `crop_flip`, the standard CIFAR recipe of He et al. 2015):
- none:             no augmentation (the handout's baseline)
- crop_flip:        random 32x32 crop of the image zero-padded by 4, horizontal flip p=0.5
- crop_flip_rotate: + rotation by a uniform angle in [-15, 15] degrees
- crop_flip_jitter: + colour jitter (brightness, contrast, saturation each +-20%)
- crop_flip_noise:  + Gaussian pixel noise, sigma 0.05 on the [0, 1] scale
- strong:           + cutout: one 16x16 square set to the mean (DeVries & Taylor 2017),
                    the same as torchvision's RandomErasing with a fixed 1/4-area square.
                    The square always lies inside the image, so a quarter of every image is
                    hidden; DeVries & Taylor centre it anywhere, letting it cross the border
                    (they found that better), which hides less on average: this preset is the
                    stronger of the two regularizers.
- crop_flip_cutout8: + cutout with an 8x8 square, inside the image: the augmentation of
                    Myrtle.ai's ResNet-18 ("How to train your ResNet", Page 2018).
- translate_flip_cutout12: the crop reads an image padded by reflection instead of zeros
                    (airbench's "translate 4"), + cutout with a 12x12 square: the augmentation
                    of airbench's ResNet-18 baseline (Jordan 2024), which the final recipe
                    follows (lab/grid.py).
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from engine.errors import LabError

PRESETS = (
    "none",
    "crop_flip",
    "crop_flip_rotate",
    "crop_flip_jitter",
    "crop_flip_noise",
    "strong",
    "crop_flip_cutout8",
    "translate_flip_cutout12",
)
PAD = 4  # pixels of zero padding before the random crop
ROTATE_DEG = 15.0
JITTER = 0.2
NOISE_SIGMA = 0.05
CUTOUT = 16  # side of the cutout square, pixels (the strong preset)
CUTOUT_SIDE = {"strong": CUTOUT, "crop_flip_cutout8": 8, "translate_flip_cutout12": 12}
REFLECT = ("translate_flip_cutout12",)  # presets whose crop pads by reflection, not zeros
# ITU-R 601 luma weights, exactly as torchvision's rgb_to_grayscale (0.2989, not 0.299).
LUMA = (0.2989, 0.587, 0.114)


def check_preset(preset: str) -> str:
    if preset not in PRESETS:
        raise LabError(f"unknown augmentation {preset!r}; choose one of {', '.join(PRESETS)}")
    return preset


@dataclass
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
    # Gaussian noise is 3,072 numbers an image, too many to draw on the CPU and copy each step,
    # so it comes from a generator on the images' device, seeded from the CPU generator: the
    # same seed gives the same noise on the same kind of device.
    noise: torch.Generator | None = None

    def __getitem__(self, s: slice) -> Draws:
        """The draws of images s.start..s.stop (views, no copy). The noise generator is shared,
        so slices must be applied in order for a run to be reproducible, as a loader does."""
        values = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
        return Draws(**{k: v[s] if isinstance(v, torch.Tensor) else v for k, v in values.items()})


def draw(
    preset: str,
    n: int,
    g: torch.Generator | None,
    device: torch.device | str = "cpu",
    size: tuple[int, int] = (32, 32),
) -> Draws:
    """Draw `preset`'s random choices for `n` images of `size` (H, W) from the CPU generator `g`
    and move them to `device`. `g` may be None only for the `none` preset."""
    check_preset(preset)
    d = Draws()
    if preset == "none":
        return d
    if g is None:
        raise ValueError(f"augmentation {preset!r} needs a torch.Generator")
    h, w = size
    offset = torch.randint(0, 2 * PAD + 1, (n, 2), generator=g)  # crop corner in the padded image
    flip = torch.rand(n, generator=g) < 0.5
    d.rows, d.cols = crop_indices(offset, flip, size)
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
    for f in ("rows", "cols", "angle", "jitter", "corner"):
        if (t := getattr(d, f)) is not None:
            setattr(d, f, t.to(device))
    return d


def pad_images(images: torch.Tensor, reflect: bool = False) -> torch.Tensor:
    """uint8 (N, C, H, W) padded by PAD on each side for the crops: zeros, or (`reflect`) a mirror
    of the border (reflection without repeating the edge, as F.pad's "reflect"), done by
    indexing so that it works on uint8."""
    if not reflect:
        return F.pad(images, (PAD, PAD, PAD, PAD))
    h, w = images.shape[-2:]

    def index(n: int) -> torch.Tensor:
        i = torch.arange(-PAD, n + PAD, device=images.device).abs()
        return torch.where(i >= n, 2 * (n - 1) - i, i)

    return images[:, :, index(h)][:, :, :, index(w)]


def crop_indices(
    offset: torch.Tensor, flip: torch.Tensor, size: tuple[int, int]
) -> tuple[torch.Tensor, torch.Tensor]:
    """Rows (n, H) and columns (n, W) of the padded image read by the crops whose top-left
    corners are `offset` (n, 2); where `flip`, the columns run right to left (a mirror image)."""
    h, w = size
    rows = offset[:, 0:1] + torch.arange(h, device=offset.device)
    cols = offset[:, 1:2] + torch.arange(w, device=offset.device)
    return rows, torch.where(flip[:, None], cols.flip(1), cols)


def gather_crops(
    padded: torch.Tensor, index: torch.Tensor, rows: torch.Tensor, cols: torch.Tensor
) -> torch.Tensor:
    """Crop i is image index[i] of the padded uint8 images, read at rows[i] x cols[i].

    One gather does a loader's shuffle, the crops and the flips (a few small kernels on a GPU,
    however large the batch). The result is (B, C, H, W) and channels-last in memory, the layout the model takes on CUDA.
    """
    crops = padded[index[:, None, None], :, rows[:, :, None], cols[:, None, :]]  # (B, H, W, C)
    return crops.permute(0, 3, 1, 2)


def crop_flip(
    x: torch.Tensor, rows: torch.Tensor, cols: torch.Tensor, reflect: bool = False
) -> torch.Tensor:
    """Crops (and flips) of the batch padded by PAD (zeros, or by reflection), reading the
    pixels `draw` chose."""
    padded = pad_images(x, reflect)
    return gather_crops(padded, torch.arange(len(x), device=x.device), rows, cols)


def rotate(x: torch.Tensor, angle: torch.Tensor) -> torch.Tensor:
    """Rotate each image about its centre by `angle` radians (bilinear, corners filled with 0)."""
    cos, sin = angle.cos(), angle.sin()
    zero = torch.zeros_like(cos)
    mat = torch.stack([torch.stack([cos, -sin, zero], 1), torch.stack([sin, cos, zero], 1)], 1)
    grid = F.affine_grid(mat.to(x.dtype), list(x.shape), align_corners=False)
    return F.grid_sample(x, grid, mode="bilinear", padding_mode="zeros", align_corners=False)


def _gray(x: torch.Tensor) -> torch.Tensor:
    r, g, b = x.unbind(1)
    return (r * LUMA[0] + g * LUMA[1] + b * LUMA[2]).unsqueeze(1)


def _blend(x: torch.Tensor, other: torch.Tensor, factor: torch.Tensor) -> torch.Tensor:
    # torchvision's _blend with a factor per image: factor * x + (1 - factor) * other, in [0, 1].
    return (factor * x + (1 - factor) * other).clamp_(0, 1)


def color_jitter(x: torch.Tensor, factors: torch.Tensor) -> torch.Tensor:
    """Brightness, contrast, saturation of float images in [0, 1], by (B, 3) `factors`.

    Each step is torchvision's adjust_brightness / adjust_contrast / adjust_saturation with the
    image's own factor. torchvision's ColorJitter applies the three in a random order per image;
    here the order is fixed, which changes the result only through the clamping between steps.
    """
    f = factors.to(x.dtype).view(-1, 3, 1, 1, 1).unbind(1)
    x = (x * f[0]).clamp_(0, 1)
    x = _blend(x, _gray(x).mean(dim=(1, 2, 3), keepdim=True), f[1])
    return _blend(x, _gray(x), f[2])


def gaussian_noise(
    x: torch.Tensor, generator: torch.Generator, sigma: float = NOISE_SIGMA
) -> torch.Tensor:
    """Add N(0, sigma^2) to every pixel of float images in [0, 1], then clip to [0, 1]."""
    noise = torch.randn(x.shape, generator=generator, device=x.device, dtype=x.dtype)
    return (x + sigma * noise).clamp_(0, 1)


def cutout(x: torch.Tensor, corner: torch.Tensor, size: int = CUTOUT) -> torch.Tensor:
    """Set one size x size square per image, with top-left `corner` (row, col), to 0."""
    _, _, h, w = x.shape
    top, left = corner[:, 0:1], corner[:, 1:2]  # (B, 1)
    r = torch.arange(h, device=x.device)
    c = torch.arange(w, device=x.device)
    rows = (r >= top) & (r < top + size)  # (B, H)
    cols = (c >= left) & (c < left + size)  # (B, W)
    return x.masked_fill((rows[:, :, None] & cols[:, None, :])[:, None], 0.0)


def float_steps(
    images: torch.Tensor,
    mean: torch.Tensor,
    std: torch.Tensor,
    d: Draws,
    memory_format: torch.memory_format = torch.contiguous_format,
) -> torch.Tensor:
    """Everything after the crop: uint8 (B, 3, H, W) -> augmented, normalized float32 batch.

    `mean`/`std` are (3,) float32 tensors on the [0, 1] scale on the images' device. The steps
    and their order are torchvision_transform's, so `none` gives the same numbers bit for bit.
    """
    if images.dtype != torch.uint8:
        # A float batch would also be normalized in place below, changing the caller's tensor.
        raise ValueError(f"expected uint8 images, got {images.dtype}")
    # Convert the layout while the batch is 1 byte a value; the float steps below keep it.
    images = images.contiguous(memory_format=memory_format)
    x = images.float().mul_(1.0 / 255)  # as v2.ToDtype(torch.float32, scale=True)
    if d.angle is not None:
        x = rotate(x, d.angle)
    if d.jitter is not None:
        x = color_jitter(x, d.jitter)
    if d.noise is not None:
        x = gaussian_noise(x, d.noise)
    x = x.sub_(mean.view(1, -1, 1, 1)).div_(std.view(1, -1, 1, 1))  # as v2.Normalize
    if d.corner is not None:
        # After normalizing, as RandomErasing(value=0) after Normalize: 0 is the mean colour.
        x = cutout(x, d.corner, d.cutout)
    return x


def apply(
    images: torch.Tensor,
    mean: torch.Tensor,
    std: torch.Tensor,
    d: Draws,
    memory_format: torch.memory_format = torch.contiguous_format,
) -> torch.Tensor:
    """uint8 (B, 3, H, W) -> the augmented, normalized float32 batch that the draws `d` say."""
    if d.rows is not None:
        images = crop_flip(images, d.rows, d.cols, d.reflect)
    return float_steps(images, mean, std, d, memory_format)


def augment_batch(
    images: torch.Tensor,
    preset: str,
    mean: torch.Tensor,
    std: torch.Tensor,
    g: torch.Generator | None = None,
) -> torch.Tensor:
    """uint8 (B, 3, H, W) -> augmented, normalized float32 batch on the same device.

    `mean`/`std` are (3,) tensors on the [0, 1] scale on the images' device. `g` is a CPU
    generator that drives every random choice; it may be None only for the `none` preset.
    """
    d = draw(preset, len(images), g, images.device, tuple(images.shape[-2:]))
    return apply(images, mean, std, d)


def torchvision_transform(preset: str, mean, std, pil: bool = False):
    """The same preset as a torchvision v2 pipeline for one uint8 (3, H, W) image tensor.

    With `pil=True` the geometric and colour steps run on a PIL Image, as in most lab handouts
    that use `torchvision.datasets.CIFAR10(transform=...)`.
    """
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
