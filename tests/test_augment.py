"""Tests for augment.py: the batched fast path against torchvision's per-image pipeline (same
crop and flip distribution, same numbers without augmentation), what each preset does, seeding
and errors. Small synthetic uint8 batches on the CPU: the file runs in a few seconds."""

import math

import pytest
import torch
from torchvision.transforms.v2 import functional as TF

from engine.augment import (
    CUTOUT,
    JITTER,
    NOISE_SIGMA,
    PAD,
    PRESETS,
    ROTATE_DEG,
    Draws,
    augment_batch,
    check_preset,
    color_jitter,
    cutout,
    draw,
    rotate,
    torchvision_transform,
)
from engine.errors import LabError

# Upper 0.1% point of the chi-square distribution with 8 degrees of freedom (9 offsets - 1).
# The tests are seeded, so this only decides how far off a broken sampler must be to fail.
CHI2_8_P001 = 26.12
ZERO, ONE = (0.0, 0.0, 0.0), (1.0, 1.0, 1.0)


def random_images(n: int, seed: int = 0, size: int = 32) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randint(0, 256, (n, 3, size, size), dtype=torch.uint8, generator=g)


def stats(mean=(0.49, 0.48, 0.45), std=(0.25, 0.24, 0.26)):
    return torch.tensor(mean), torch.tensor(std)


def gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


# ---- crop and flip: the fast path and torchvision draw from the same distribution ----------


def marker() -> torch.Tensor:
    """One 32x32 image whose pixels say where they came from: channel 0 holds row + 1, channel 1
    holds column + 1 (so the zero padding is told apart), channel 2 a constant."""
    r = torch.arange(1, 33).view(32, 1).expand(32, 32)
    c = torch.arange(1, 33).view(1, 32).expand(32, 32)
    return torch.stack([r, c, torch.full((32, 32), 7)]).to(torch.uint8)


def read_crops(out: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(row offset, column offset, flipped) of each marker crop, checked against the whole image.

    The offsets are the crop's top-left corner in the padded image, 0..2*PAD. Output pixel (16,
    16) always lies inside the original image, so its marker values give the offsets; every
    other pixel must then equal the padded marker cropped there (and mirrored if flipped).
    """
    px = (out.float() * 255).round().to(torch.int64)  # inputs normalized with mean 0, std 1
    flipped = px[:, 1, 16, 17] < px[:, 1, 16, 16]
    dy = px[:, 0, 16, 16] - 1 - 16 + PAD
    # Unflipped, output column j shows column dx - PAD + j; flipped, dx - PAD + 31 - j.
    dx = px[:, 1, 16, 16] - 1 - torch.where(flipped, 15, 16) + PAD
    padded = TF.pad(marker(), [PAD]).to(torch.int64)
    for i in range(len(px)):
        crop = padded[:, dy[i] : dy[i] + 32, dx[i] : dx[i] + 32]
        expected = crop.flip(2) if flipped[i] else crop
        assert torch.equal(px[i], expected), f"image {i} is not a crop of the padded image"
    return dy, dx, flipped


def chi2_uniform(values: torch.Tensor, k: int) -> float:
    counts = torch.bincount(values, minlength=k).double()
    expected = len(values) / k
    return float(((counts - expected) ** 2 / expected).sum())


def chi2_same(a: torch.Tensor, b: torch.Tensor, k: int) -> float:
    """Chi-square statistic of the 2 x k contingency table: do a and b share a distribution?"""
    table = torch.stack([torch.bincount(a, minlength=k), torch.bincount(b, minlength=k)]).double()
    expected = table.sum(1, keepdim=True) * table.sum(0, keepdim=True) / table.sum()
    return float(((table - expected) ** 2 / expected).sum())


@pytest.fixture(scope="module")
def crops() -> dict:
    n = 3000
    images = marker().expand(n, 3, 32, 32).contiguous()
    mean, std = stats(ZERO, ONE)
    fast = read_crops(augment_batch(images, "crop_flip", mean, std, gen(0)))
    torch.manual_seed(0)  # torchvision draws from the global generator
    tf = torchvision_transform("crop_flip", ZERO, ONE)
    reference = read_crops(torch.stack([tf(images[i]) for i in range(n)]))
    return {"fast": fast, "torchvision": reference, "n": n}


@pytest.mark.parametrize("path", ["fast", "torchvision"])
def test_crop_offsets_uniform_and_flip_half(crops: dict, path: str) -> None:
    dy, dx, flipped = crops[path]
    k = 2 * PAD + 1
    assert dy.min() == 0 and dy.max() == 2 * PAD and dx.min() == 0 and dx.max() == 2 * PAD
    assert chi2_uniform(dy, k) < CHI2_8_P001
    assert chi2_uniform(dx, k) < CHI2_8_P001
    # Four standard deviations of a fair coin's rate over n draws.
    assert abs(flipped.double().mean() - 0.5) < 4 * math.sqrt(0.25 / crops["n"])


def test_fast_and_torchvision_crop_histograms_agree(crops: dict) -> None:
    (dy_a, dx_a, flip_a), (dy_b, dx_b, flip_b) = crops["fast"], crops["torchvision"]
    k = 2 * PAD + 1
    assert chi2_same(dy_a, dy_b, k) < CHI2_8_P001
    assert chi2_same(dx_a, dx_b, k) < CHI2_8_P001
    assert abs(flip_a.double().mean() - flip_b.double().mean()) < 4 * math.sqrt(0.5 / crops["n"])


def test_flip_independent_of_offset(crops: dict) -> None:
    # A flip that depended on the offset (a wrong column formula) would skew this split.
    dy, dx, flipped = crops["fast"]
    assert chi2_same(dx[flipped], dx[~flipped], 2 * PAD + 1) < CHI2_8_P001


# ---- without augmentation both paths give the same tensors ---------------------------------


@pytest.mark.parametrize("pil", [False, True])
def test_none_matches_torchvision_exactly(pil: bool) -> None:
    images = random_images(16)
    mean, std = stats()
    fast = augment_batch(images, "none", mean, std)
    tf = torchvision_transform("none", mean.tolist(), std.tolist(), pil=pil)
    reference = torch.stack([tf(im) for im in images])
    assert fast.dtype == reference.dtype == torch.float32
    assert torch.equal(fast, reference)


# ---- every preset runs; each extra step does what it says ----------------------------------


@pytest.mark.parametrize("preset", PRESETS)
def test_every_preset_keeps_shape_and_dtype(preset: str) -> None:
    images = random_images(8)
    mean, std = stats()
    out = augment_batch(images, preset, mean, std, gen(0))
    assert out.shape == images.shape and out.dtype == torch.float32 and out.device == images.device
    assert torch.isfinite(out).all()
    for pil in (False, True):
        one = torchvision_transform(preset, mean.tolist(), std.tolist(), pil=pil)(images[0])
        assert one.shape == images.shape[1:] and one.dtype == torch.float32


def principal_angle(img: torch.Tensor) -> float:
    """Angle in degrees of the main axis of a (H, W) intensity image, from its second moments."""
    h, w = img.shape
    y = torch.arange(h, dtype=torch.float64).view(h, 1) - (h - 1) / 2
    x = torch.arange(w, dtype=torch.float64).view(1, w) - (w - 1) / 2
    m = img.double() / img.sum()
    mx, my = (m * x).sum(), (m * y).sum()
    cxx, cyy = (m * (x - mx) ** 2).sum(), (m * (y - my) ** 2).sum()
    cxy = (m * (x - mx) * (y - my)).sum()
    return math.degrees(0.5 * math.atan2(2 * cxy, cxx - cyy))


@pytest.mark.parametrize("degrees", [-15.0, -7.0, 0.0, 4.0, 15.0])
def test_rotate_turns_a_bar_by_the_angle(degrees: float) -> None:
    bar = torch.zeros(1, 3, 32, 32)
    bar[:, :, 15:17, 2:30] = 1.0  # a horizontal bar through the centre
    out = rotate(bar, torch.tensor([math.radians(degrees)]))
    # The sign convention (clockwise or not) does not matter: the draws are symmetric.
    assert abs(abs(principal_angle(out[0, 0])) - abs(degrees)) < 1.0


def test_rotation_angles_uniform_within_bounds() -> None:
    angles = torch.rad2deg(draw("crop_flip_rotate", 5000, gen(0)).angle)
    assert angles.abs().max() <= ROTATE_DEG
    assert angles.min() < -0.98 * ROTATE_DEG and angles.max() > 0.98 * ROTATE_DEG
    counts = torch.histc(angles, bins=10, min=-ROTATE_DEG, max=ROTATE_DEG)
    assert ((counts - 500) ** 2 / 500).sum() < 27.88  # chi-square, 9 dof, p = 0.001


def test_jitter_factors_within_bounds() -> None:
    f = draw("crop_flip_jitter", 5000, gen(0)).jitter
    assert f.shape == (5000, 3)
    assert f.min() >= 1 - JITTER and f.max() <= 1 + JITTER
    assert (f.amin(0) < 1 - 0.98 * JITTER).all() and (f.amax(0) > 1 + 0.98 * JITTER).all()


def test_jitter_is_torchvisions_brightness_contrast_saturation() -> None:
    x = random_images(6).float() / 255
    factors = torch.tensor([[0.8, 1.2, 1.0], [1.2, 0.8, 0.8], [1.0, 1.0, 1.2]]).repeat(2, 1)
    out = color_jitter(x, factors)
    for img, (b, c, s), got in zip(x, factors.tolist(), out):
        expected = TF.adjust_saturation(TF.adjust_contrast(TF.adjust_brightness(img, b), c), s)
        torch.testing.assert_close(got, expected, atol=1e-5, rtol=0)


def test_noise_adds_sigma() -> None:
    images = torch.full((64, 3, 32, 32), 128, dtype=torch.uint8)
    mean, std = stats(ZERO, ONE)
    # The centre 24x24 of a crop never reaches the zero padding, so it is constant without noise.
    plain = augment_batch(images, "crop_flip", mean, std, gen(0))[:, :, 4:28, 4:28]
    noisy = augment_batch(images, "crop_flip_noise", mean, std, gen(0))[:, :, 4:28, 4:28]
    assert (plain == 128 / 255).all()
    assert abs(noisy.std().item() - NOISE_SIGMA) < 0.02 * NOISE_SIGMA
    assert abs(noisy.mean().item() - 128 / 255) < 0.002


def square_of_zeros(img: torch.Tensor) -> tuple[int, int]:
    """(height, width) of the box around the zeros of a (C, H, W) image; asserts it is full."""
    zero = (img == 0).all(0)
    rows, cols = zero.any(1).nonzero(), zero.any(0).nonzero()
    top, bottom, left, right = rows.min(), rows.max() + 1, cols.min(), cols.max() + 1
    assert zero[top:bottom, left:right].all() and zero.sum() == (bottom - top) * (right - left)
    assert (img == 0).sum() == img.shape[0] * zero.sum()  # every channel, same square
    return int(bottom - top), int(right - left)


def test_cutout_zeroes_one_square() -> None:
    x = torch.ones(5, 3, 32, 32)
    corner = torch.tensor([[0, 0], [16, 16], [3, 9], [16, 0], [7, 7]])
    out = cutout(x, corner)
    for img, (top, left) in zip(out, corner.tolist()):
        assert square_of_zeros(img) == (CUTOUT, CUTOUT)
        assert (img[:, top : top + CUTOUT, left : left + CUTOUT] == 0).all()


@pytest.mark.parametrize("path", ["fast", "torchvision"])
def test_strong_cuts_one_16x16_square_per_image(path: str) -> None:
    # White images normalized with mean = std = 0.5: image pixels -> 1, zero padding -> -1, so
    # exactly the cutout square is 0.
    images = torch.full((32, 3, 32, 32), 255, dtype=torch.uint8)
    half = (0.5, 0.5, 0.5)
    if path == "fast":
        out = augment_batch(images, "strong", *stats(half, half), gen(0))
    else:
        torch.manual_seed(0)
        tf = torchvision_transform("strong", half, half)
        out = torch.stack([tf(im) for im in images])
    for img in out:
        assert square_of_zeros(img) == (CUTOUT, CUTOUT)
    corners = draw("strong", 2000, gen(0)).corner
    assert corners.min() == 0 and corners.max() == 32 - CUTOUT


# ---- seeding, devices, errors ---------------------------------------------------------------


@pytest.mark.parametrize("preset", [p for p in PRESETS if p != "none"])
def test_same_seed_same_output_different_seed_different(preset: str) -> None:
    images = random_images(16)
    mean, std = stats()
    a = augment_batch(images, preset, mean, std, gen(3))
    b = augment_batch(images, preset, mean, std, gen(3))
    c = augment_batch(images, preset, mean, std, gen(4))
    assert torch.equal(a, b)
    assert not torch.equal(a, c)


def test_draws_slice_in_order_equal_one_batch() -> None:
    # What DeviceLoader relies on: one draw for the epoch, applied batch by batch.
    d = draw("crop_flip_noise", 10, gen(5))
    part = d[2:6]
    assert isinstance(part, Draws) and part.noise is d.noise
    assert torch.equal(part.rows, d.rows[2:6]) and torch.equal(part.cols, d.cols[2:6])


def test_input_not_changed() -> None:
    images = random_images(8)
    before = images.clone()
    for preset in PRESETS:
        augment_batch(images, preset, *stats(), gen(0))
    assert torch.equal(images, before)


def test_float_images_rejected() -> None:
    with pytest.raises(ValueError, match="uint8"):
        augment_batch(torch.rand(2, 3, 32, 32), "none", *stats())


def test_random_preset_needs_a_generator() -> None:
    with pytest.raises(ValueError, match="Generator"):
        augment_batch(random_images(2), "crop_flip", *stats())


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")
@pytest.mark.parametrize("preset", ["crop_flip", "crop_flip_rotate", "strong"])
def test_cuda_matches_cpu(preset: str) -> None:
    # The draws come from the CPU generator, so the device changes the arithmetic, not the crops.
    images = random_images(64)
    mean, std = stats()
    cpu = augment_batch(images, preset, mean, std, gen(0))
    gpu = augment_batch(images.cuda(), preset, mean.cuda(), std.cuda(), gen(0))
    torch.testing.assert_close(gpu.cpu(), cpu, atol=1e-4, rtol=0)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")
def test_cuda_noise_reproducible() -> None:
    images = random_images(16).cuda()
    mean, std = (t.cuda() for t in stats())
    a, b, c = (augment_batch(images, "crop_flip_noise", mean, std, gen(s)) for s in (0, 0, 1))
    assert torch.equal(a, b) and not torch.equal(a, c)


@pytest.mark.parametrize(
    "call",
    [
        lambda: check_preset("flip"),
        lambda: draw("autoaugment", 4, gen(0)),
        lambda: augment_batch(random_images(2), "Crop_Flip", *stats(), gen(0)),
        lambda: torchvision_transform("cutout", ZERO, ONE),
    ],
)
def test_unknown_preset_lists_valid_names(call) -> None:
    with pytest.raises(LabError) as info:
        call()
    message = str(info.value)
    assert "\n" not in message
    for name in PRESETS:
        assert name in message
