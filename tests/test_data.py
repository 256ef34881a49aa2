"""CIFAR-10 loading, the validation split and the normalization modes, on the real images."""

import numpy as np
import pytest
import torch
from PIL import Image

from engine.data import (
    CLASSES,
    get_mean_std,
    load_cifar10,
    normalization_stats,
    split_train_val,
)
from engine.errors import LabError
from engine.loader import TensorImages


def test_shapes_labels_and_class_order(cifar):
    assert cifar.train_images.shape == (50000, 3, 32, 32)
    assert cifar.test_images.shape == (10000, 3, 32, 32)
    assert cifar.train_images.dtype == torch.uint8
    assert cifar.classes == CLASSES == tuple(sorted(CLASSES))
    assert cifar.train_labels.bincount().tolist() == [5000] * 10
    assert cifar.test_labels.bincount().tolist() == [1000] * 10


def test_pixels_match_the_files(cifar):
    """Image k of class c is the k-th file of train/<c>/ in sorted order, decoded as RGB."""
    folder = cifar.source.split("image folder ", 1)[-1]
    if not cifar.source.startswith("image folder"):
        pytest.skip("data did not come from an image folder")
    from pathlib import Path

    for label in (0, 3, 9):
        files = sorted(p for p in (Path(folder) / "train" / CLASSES[label]).iterdir())
        first = int((cifar.train_labels == label).nonzero()[0])
        expected = np.asarray(Image.open(files[0]).convert("RGB")).transpose(2, 0, 1)
        assert torch.equal(cifar.train_images[first], torch.from_numpy(expected.copy()))
        assert int(cifar.train_labels[first]) == label


def test_split_is_disjoint_complete_and_seeded():
    train, val = split_train_val(50000, 5000, seed=0)
    assert len(train) == 45000 and len(val) == 5000
    assert len(set(train.tolist()) | set(val.tolist())) == 50000
    assert not set(train.tolist()) & set(val.tolist())
    train2, val2 = split_train_val(50000, 5000, seed=0)
    assert torch.equal(val, val2) and torch.equal(train, train2)
    _, val3 = split_train_val(50000, 5000, seed=1)
    assert not torch.equal(val, val3)


def test_split_larger_than_data_is_a_clear_error():
    with pytest.raises(LabError, match="does not fit"):
        split_train_val(100, 100)


def _apply(images, mean, std):
    x = images.float() / 255
    return (x - torch.tensor(mean).view(1, 3, 1, 1)) / torch.tensor(std).view(1, 3, 1, 1)


def test_none_keeps_zero_one(cifar):
    x = _apply(cifar.train_images[:2000], *normalization_stats("none", cifar.train_images[:2000]))
    assert x.min() >= 0 and x.max() <= 1


def test_minmax_maps_each_channel_to_minus_one_one(cifar):
    imgs = cifar.train_images[:5000]
    x = _apply(imgs, *normalization_stats("minmax", imgs))
    lo, hi = x.amin(dim=(0, 2, 3)), x.amax(dim=(0, 2, 3))
    torch.testing.assert_close(lo, torch.full((3,), -1.0), atol=1e-4, rtol=0)
    torch.testing.assert_close(hi, torch.full((3,), 1.0), atol=1e-4, rtol=0)


def test_exact_standardization_gives_zero_mean_unit_std(cifar):
    train_idx, _ = split_train_val(50000, 5000)
    imgs = cifar.train_images[train_idx]
    mean, std = normalization_stats("standard_exact", imgs)
    x = _apply(imgs[::10], mean, std)
    # a 10% subsample of the images the statistics came from: close to 0 / 1
    torch.testing.assert_close(x.mean(dim=(0, 2, 3)), torch.zeros(3), atol=0.01, rtol=0)
    torch.testing.assert_close(x.std(dim=(0, 2, 3)), torch.ones(3), atol=0.01, rtol=0)
    # the shared copy's README: mean (0.4913, 0.4821, 0.4465), std (0.2452, 0.2428, 0.2606)
    np.testing.assert_allclose(mean, (0.4913, 0.4821, 0.4465), atol=0.002)
    np.testing.assert_allclose(std, (0.2452, 0.2428, 0.2606), atol=0.002)


def test_sampled_statistics_are_the_labs_get_mean_std(cifar):
    imgs = cifar.train_images[:10000]
    sampled = normalization_stats("standard_sampled", imgs, seed=3)
    assert sampled == get_mean_std(imgs, ratio=0.3, seed=3)
    exact = normalization_stats("standard_exact", imgs)
    np.testing.assert_allclose(sampled[0], exact[0], atol=0.01)
    np.testing.assert_allclose(sampled[1], exact[1], atol=0.01)
    assert get_mean_std(imgs, 0.3, seed=4) != sampled  # a different sample


def test_get_mean_std_accepts_a_dataset(cifar):
    imgs = cifar.train_images[:300]
    ds = TensorImages(imgs, cifar.train_labels[:300], transform=lambda x: x.float() / 255)
    from_ds = get_mean_std(ds, ratio=1.0)
    from_tensor = get_mean_std(imgs, ratio=1.0)
    np.testing.assert_allclose(from_ds, from_tensor, atol=1e-5)


def test_unknown_mode_is_refused():
    with pytest.raises(LabError, match="choose one of"):
        normalization_stats("zscore", torch.zeros(1, 3, 2, 2, dtype=torch.uint8))


# --- folders: a tiny CIFAR-shaped folder written in the test -------------------------------


def make_folder(root, classes=CLASSES, per_class=2, bad_file=False):
    rng = np.random.default_rng(0)
    for split in ("train", "test"):
        for c in classes:
            d = root / split / c
            d.mkdir(parents=True)
            for k in range(per_class):
                arr = rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)
                Image.fromarray(arr).save(d / f"{k:04d}.png")
    if bad_file:
        (root / "train" / classes[0] / "9999.png").write_bytes(b"not an image")
    return root


def test_local_folder_loads_and_caches(tmp_path):
    root = make_folder(tmp_path / "cifar")
    d = load_cifar10(root, cache_dir=tmp_path / "cache", download=False)
    assert d.train_images.shape == (20, 3, 32, 32) and d.test_images.shape == (20, 3, 32, 32)
    assert d.train_labels.tolist() == [i for i in range(10) for _ in range(2)]
    assert list((tmp_path / "cache").glob("*.npz"))
    again = load_cifar10(root, cache_dir=tmp_path / "cache", download=False)
    assert torch.equal(again.train_images, d.train_images)


def test_unknown_class_names_are_refused(tmp_path):
    root = make_folder(tmp_path / "cifar", classes=CLASSES[:9] + ("lorry",))
    with pytest.raises(LabError, match="expected the 10 CIFAR-10 classes"):
        load_cifar10(root, cache_dir=tmp_path / "cache", download=False)


def test_unreadable_image_is_named(tmp_path):
    root = make_folder(tmp_path / "cifar", bad_file=True)
    with pytest.raises(LabError, match="9999.png"):
        load_cifar10(root, cache_dir=tmp_path / "cache", download=False)


def test_missing_data_says_how_to_point_at_a_copy(tmp_path):
    with pytest.raises(LabError, match="LAB3_DATA_DIR") as e:
        load_cifar10(tmp_path / "nowhere", cache_dir=tmp_path / "cache", download=False)
    assert "\n" not in str(e.value)
