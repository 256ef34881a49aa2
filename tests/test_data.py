"""CIFAR-10 loading, the validation split and the normalization modes, on the real images.

The `cifar` fixture is the lossless PNG copy (official pixels, official order) beside the
checkout; tests that need files of their own write small CIFAR-shaped copies in tmp_path."""

import hashlib
import io
import os
import pickle
import struct
import tarfile

import numpy as np
import pytest
import torch
from PIL import Image

import engine.data
from engine.augment import TensorImages
from engine.data import (
    CLASSES,
    get_mean_std,
    load_cifar10,
    normalization_stats,
    split_train_val,
)
from engine.errors import LabError

# The published statistics of the 50,000 official training images (e.g. kuangliu/pytorch-cifar
# and the shared copy's README; the figures).
PUBLISHED_MEAN = (0.4914, 0.4822, 0.4465)
PUBLISHED_STD = (0.2470, 0.2435, 0.2616)


def test_shapes_labels_and_class_order(cifar):
    assert cifar.train_images.shape == (50000, 3, 32, 32)
    assert cifar.test_images.shape == (10000, 3, 32, 32)
    assert cifar.train_images.dtype == torch.uint8
    assert cifar.classes == CLASSES == tuple(sorted(CLASSES))
    assert cifar.train_labels.bincount().tolist() == [5000] * 10
    assert cifar.test_labels.bincount().tolist() == [1000] * 10


def _lossless(cifar):
    if not cifar.source.startswith("CIFAR-10 PNG copy (lossless)"):
        pytest.skip(f"these figures are the lossless copy's; the data here is {cifar.source}")


def test_official_order(cifar):
    _lossless(cifar)
    first_train = [CLASSES[i] for i in cifar.train_labels[:5]]
    first_test = [CLASSES[i] for i in cifar.test_labels[:5]]
    assert first_train == ["frog", "truck", "truck", "deer", "automobile"]
    assert first_test == ["cat", "ship", "ship", "airplane", "frog"]


def test_published_mean_and_std_to_four_decimals(cifar):
    _lossless(cifar)
    mean, std = normalization_stats("standard_exact", cifar.train_images)
    assert tuple(round(m, 4) for m in mean) == PUBLISHED_MEAN
    assert tuple(round(s, 4) for s in std) == PUBLISHED_STD
    sampled_mean, sampled_std = get_mean_std(cifar.train_images, ratio=0.3)
    np.testing.assert_allclose(sampled_mean, mean, atol=0.002)
    np.testing.assert_allclose(sampled_std, std, atol=0.002)


def test_pixels_match_the_files(cifar):
    """Test image k is the file test/<class>/k.png of the tarball, decoded as RGB (test/ is
    packed first, so only the tarball's first members are read)."""
    from conftest import data_location

    loc = data_location()
    if not str(loc).endswith(".tar.gz"):
        pytest.skip("data did not come from a tarball")
    wanted = {f"test/{CLASSES[int(cifar.test_labels[k])]}/{k:05d}.png": k for k in (0, 3, 7)}
    with tarfile.open(loc, "r|gz") as tar:
        for member in tar:
            key = "/".join(member.name.split("/")[-3:])
            if key in wanted:
                k = wanted.pop(key)
                png = Image.open(io.BytesIO(tar.extractfile(member).read())).convert("RGB")
                expected = torch.from_numpy(np.asarray(png).transpose(2, 0, 1).copy())
                assert torch.equal(cifar.test_images[k], expected), key
            if not wanted:
                break
    assert not wanted, f"not in the tarball: {sorted(wanted)}"


def test_source_is_named_by_content(cifar):
    assert "/" not in cifar.source and "\\" not in cifar.source
    assert cifar.source.startswith(("CIFAR-10 ", "torchvision CIFAR-10"))


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
    # 45,000 of the 50,000 official images: close to the published statistics
    np.testing.assert_allclose(mean, PUBLISHED_MEAN, atol=0.002)
    np.testing.assert_allclose(std, PUBLISHED_STD, atol=0.005)


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


# --- copies of the real images, written in the test: order, formats, caches ----------------

N_TRAIN, N_TEST = 5 * 24, 24  # five training batches of 24, one test batch


def write_png_copy(root, images, labels, split):
    """images[k] (CHW uint8) saved as <split>/<class>/<k>.png, as the lossless copy names them."""
    for c in CLASSES:
        (root / split / c).mkdir(parents=True, exist_ok=True)
    for k, (img, y) in enumerate(zip(images, labels)):
        path = root / split / CLASSES[int(y)] / f"{k:05d}.png"
        Image.fromarray(img.permute(1, 2, 0).numpy()).save(path)


@pytest.fixture(scope="module")
def first_images(cifar):
    """The first official training and test images, as a small PNG copy's arrays."""
    return (
        cifar.train_images[:N_TRAIN],
        cifar.train_labels[:N_TRAIN],
        cifar.test_images[:N_TEST],
        cifar.test_labels[:N_TEST],
    )


class Py2Pickler(pickle._Pickler):
    """Writes str and bytes as Python 2 strings, as the official batches were pickled (cPickle,
    Python 2): torchvision reads them with encoding="latin1" (str keys such as "data"), the
    dataset's own page with encoding="bytes" (keys b"data", b"labels", ...)."""

    dispatch = pickle._Pickler.dispatch.copy()

    def save_py2_string(self, obj):
        data = obj.encode("latin1") if isinstance(obj, str) else obj
        if len(data) < 256:
            self.write(pickle.SHORT_BINSTRING + bytes([len(data)]) + data)
        else:
            self.write(pickle.BINSTRING + struct.pack("<i", len(data)) + data)
        self.memoize(obj)

    dispatch[str] = save_py2_string
    dispatch[bytes] = save_py2_string


def write_batches(root, train_x, train_y, test_x, test_y):
    """A cifar-10-batches-py/ in the official layout: data_batch_1..5, test_batch, batches.meta."""
    folder = root / "cifar-10-batches-py"
    folder.mkdir(parents=True)

    def dump(name, obj):
        with open(folder / name, "wb") as f:
            Py2Pickler(f, protocol=2).dump(obj)

    per = len(train_x) // 5
    parts = [
        (f"data_batch_{i + 1}", f"training batch {i + 1} of 5", slice(i * per, (i + 1) * per))
        for i in range(5)
    ]
    for name, label, rows in parts + [("test_batch", "testing batch 1 of 1", slice(None))]:
        x, y = (test_x, test_y) if name == "test_batch" else (train_x[rows], train_y[rows])
        dump(
            name,
            {
                "batch_label": label,
                "labels": [int(v) for v in y],
                "data": x.reshape(len(x), -1).numpy(),  # rows of 3072: 1024 R, 1024 G, 1024 B
                "filenames": [f"image_{i}.png" for i in range(len(x))],
            },
        )
    dump(
        "batches.meta", {"label_names": list(CLASSES), "num_cases_per_batch": per, "num_vis": 3072}
    )


def test_torchvision_batches_and_png_copy_agree(first_images, tmp_path, monkeypatch):
    train_x, train_y, test_x, test_y = first_images
    write_batches(tmp_path / "tv", *first_images)
    with open(tmp_path / "tv" / "cifar-10-batches-py" / "data_batch_1", "rb") as f:
        keys = set(pickle.load(f, encoding="bytes"))
    assert keys == {b"data", b"labels", b"batch_label", b"filenames"}
    # torchvision checks the files against the official md5s; these are a small replica
    import torchvision.datasets.cifar as tv

    monkeypatch.setattr(tv.CIFAR10, "_check_integrity", lambda self: True)
    monkeypatch.setattr(tv, "check_integrity", lambda *a, **k: True)
    from_tv = load_cifar10(tmp_path / "tv", cache_dir=tmp_path / "cache", download=False)
    assert from_tv.source == "torchvision CIFAR-10 (official batches)"

    copy = tmp_path / "any-name" / "inner"  # a folder holding one folder that holds train/, test/
    write_png_copy(copy, train_x, train_y, "train")
    write_png_copy(copy, test_x, test_y, "test")
    from_png = load_cifar10(tmp_path / "any-name", cache_dir=tmp_path / "cache", download=False)
    for d in (from_tv, from_png):
        assert torch.equal(d.train_images, train_x) and torch.equal(d.test_images, test_x)
        assert torch.equal(d.train_labels, train_y) and torch.equal(d.test_labels, test_y)
    assert from_png.source.startswith("CIFAR-10 PNG folder (lossless), pixels sha256 ")


def tar_folder(folder, tarball, top):
    with tarfile.open(tarball, "w:gz") as tar:
        for split in ("train", "test"):
            tar.add(folder / split, arcname=f"{top}/{split}" if top else split)
    return tarball


def test_a_tarball_loads_whatever_its_top_folder(first_images, tmp_path):
    train_x, train_y, test_x, test_y = first_images
    copy = tmp_path / "copy"
    write_png_copy(copy, train_x, train_y, "train")
    write_png_copy(copy, test_x, test_y, "test")
    for top in ("cifar10-png", "Something Else", ""):
        tarball = tar_folder(copy, tmp_path / f"t{len(top)}.tar.gz", top)
        d = load_cifar10(tarball, cache_dir=tmp_path / "cache", download=False)
        assert torch.equal(d.train_images, train_x) and torch.equal(d.train_labels, train_y)
        assert torch.equal(d.test_images, test_x) and torch.equal(d.test_labels, test_y)
        digest = hashlib.sha256(tarball.read_bytes()).hexdigest()
        assert d.source == f"CIFAR-10 PNG copy (lossless), sha256 {digest[:8]}…"
        again = load_cifar10(tarball, cache_dir=tmp_path / "cache", download=False)
        assert torch.equal(again.train_images, train_x) and again.source == d.source
    assert len(list((tmp_path / "cache").glob("cifar10-*.pt"))) == 3  # one cache a tarball


def test_jpeg_copy_is_named_lossy_with_its_quality(tmp_path):
    rng = np.random.default_rng(0)
    for split in ("train", "test"):
        for c in CLASSES:
            (tmp_path / "jpeg" / split / c).mkdir(parents=True)
            arr = rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)
            Image.fromarray(arr).save(tmp_path / "jpeg" / split / c / "0000.jpg", quality=75)
    tarball = tar_folder(tmp_path / "jpeg", tmp_path / "jpeg.tar.gz", "cifar10-jpeg")
    d = load_cifar10(tarball, cache_dir=tmp_path / "cache", download=False)
    assert d.source.startswith("CIFAR-10 JPEG copy (quality 75, lossy), sha256 ")
    assert d.train_labels.tolist() == list(range(10))  # no indices in the names: class by class


def make_folder(root, classes=CLASSES, per_class=2, bad_file=False):
    rng = np.random.default_rng(0)
    for split in ("train", "test"):
        for c in classes:
            d = root / split / c
            d.mkdir(parents=True)
            for k in range(per_class):
                arr = rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)
                Image.fromarray(arr).save(d / f"{c}_{k:04d}.png")
    if bad_file:
        (root / "train" / classes[0] / "9999.png").write_bytes(b"not an image")
    return root


def test_local_folder_loads_and_caches(tmp_path):
    root = make_folder(tmp_path / "cifar")
    d = load_cifar10(root, cache_dir=tmp_path / "cache", download=False)
    assert d.train_images.shape == (20, 3, 32, 32) and d.test_images.shape == (20, 3, 32, 32)
    assert d.train_labels.tolist() == [i for i in range(10) for _ in range(2)]
    assert list((tmp_path / "cache").glob("cifar10-*.pt"))
    assert not list((tmp_path / "cache").glob("*.tmp"))
    again = load_cifar10(root, cache_dir=tmp_path / "cache", download=False)
    assert torch.equal(again.train_images, d.train_images) and again.source == d.source


def test_a_changed_image_rebuilds_the_cache(tmp_path):
    root = make_folder(tmp_path / "cifar")
    before = load_cifar10(root, cache_dir=tmp_path / "cache", download=False)
    path = root / "train" / "airplane" / "airplane_0000.png"
    Image.fromarray(np.zeros((32, 32, 3), np.uint8)).save(path)
    os.utime(path, ns=(1, 1))  # whatever the clock: the size and mtime changed
    after = load_cifar10(root, cache_dir=tmp_path / "cache", download=False)
    assert after.train_images[0].sum() == 0 and before.train_images[0].sum() > 0
    assert after.source != before.source  # named by its pixels


def test_a_damaged_cache_is_rebuilt_with_a_note(tmp_path, capsys):
    root = make_folder(tmp_path / "cifar")
    first = load_cifar10(root, cache_dir=tmp_path / "cache", download=False)
    (cached,) = (tmp_path / "cache").glob("cifar10-*.pt")
    cached.write_bytes(cached.read_bytes()[:1000])
    capsys.readouterr()
    again = load_cifar10(root, cache_dir=tmp_path / "cache", download=False)
    err = capsys.readouterr().err
    assert "unreadable" in err and "rebuilding" in err and err.count("\n") == 1
    assert torch.equal(again.train_images, first.train_images)
    assert torch.load(cached, weights_only=True)["train_images"].shape == (20, 3, 32, 32)  # whole


def test_default_location_is_data_then_the_copy_beside_the_checkout(tmp_path, monkeypatch):
    monkeypatch.delenv("LAB3_DATA_DIR", raising=False)
    monkeypatch.chdir(tmp_path)
    beside = tar_folder(make_folder(tmp_path / "lossless"), tmp_path / "beside.tar.gz", "x")
    monkeypatch.setattr(engine.data, "BESIDE_CHECKOUT", beside)
    d = load_cifar10(cache_dir=tmp_path / "cache", download=False)
    assert d.source.startswith("CIFAR-10 PNG copy (lossless)")
    make_folder(tmp_path / "data", per_class=1)  # ./data holding a copy comes first
    assert len(load_cifar10(cache_dir=tmp_path / "cache", download=False).train_images) == 10
    monkeypatch.setattr(engine.data, "BESIDE_CHECKOUT", tmp_path / "absent.tar.gz")
    monkeypatch.chdir(tmp_path / "lossless")
    with pytest.raises(LabError, match="LAB3_DATA_DIR") as e:
        load_cifar10(cache_dir=tmp_path / "cache", download=False)
    assert "\n" not in str(e.value)


def test_results_name_their_data_without_a_path(cifar, tmp_path, one_thread_per_module):
    from lab.grid import RunOptions, run_experiment

    options = RunOptions(
        out=tmp_path / "results",
        ckpt_root=tmp_path / "ck",
        progress=False,
        echo=lambda *a: None,
        overrides={"epochs": 1},
    )
    result = run_experiment("baseline", "smoke", data=cifar, options=options)
    assert result["data"] == cifar.source and "/" not in result["data"]
