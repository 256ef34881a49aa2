"""The training engine on a fixed subset of the real data: it learns and logs the lab's lines."""

import json
import math
import re

import pytest
import torch

from engine.checkpoint import save_json
from engine.errors import LabError
from train_utils import RunConfig, train

# A run small enough for two CPU cores: 2,000 training images, a width-8 ResNet18.
SMALL = dict(
    width=8,
    train_subset=2000,
    val_size=500,
    test_subset=500,
    epochs=3,
    batch_size=32,
    norm="standard_exact",
    schedule="constant",
    lr=0.02,
)


@pytest.fixture(scope="module")
def small_run(cifar):
    lines: list[str] = []
    result = train(RunConfig(name="small", **SMALL), cifar, progress=False, log=lines.append)
    return result, lines


def test_a_small_run_learns(small_run):
    result, _ = small_run
    assert result.status == "ok"
    # chance is 0.10; on 500 validation images its spread is ~0.013, so 0.2 is far above it
    assert result.history["val_acc"][-1] > 0.2
    assert result.history["train_loss"][-1] < result.history["train_loss"][0]
    assert 0 < result.test_acc <= 1 and math.isfinite(result.test_loss)


def test_history_has_one_entry_per_epoch(small_run):
    result, _ = small_run
    h = result.history
    assert h["epoch"] == [1, 2, 3]
    assert all(len(v) == 3 for v in h.values())
    assert h["lr"] == [0.02] * 3
    assert all(s > 0 for s in h["seconds"])
    conf = torch.tensor(result.confusion)
    assert conf.shape == (10, 10) and conf.sum() == 500
    assert conf.diag().sum() / 500 == pytest.approx(result.test_acc)


def test_prints_the_labs_lines(small_run):
    _, lines = small_run
    text = "\n".join(lines)
    for epoch in (1, 2, 3):
        assert re.search(
            rf"^Epoch: {epoch}\nlearning rate: [\d.e-]+\n"
            r"Train loss: \d+\.\d{4} \| Train acc: [01]\.\d{4}\n"
            r"Val loss: \d+\.\d{4} \| Val acc: [01]\.\d{4}$",
            text,
            re.M,
        ), text
    assert re.search(r"^Test loss: \d+\.\d{4} \| Test acc: [01]\.\d{4}$", lines[-1])
    # the red mean of a 2,000-image subset, near CIFAR-10's published 0.4914
    m = re.match(r"Normalization standard_exact: mean \[([\d.]+), ", lines[0])
    assert m and abs(float(m.group(1)) - 0.4914) < 0.01, lines[0]


def test_result_saves_as_strict_json(small_run, tmp_path):
    result, _ = small_run
    save_json(result.to_dict(), tmp_path / "r.json")
    back = json.loads((tmp_path / "r.json").read_text())
    assert back["history"]["val_acc"] == result.history["val_acc"]
    assert back["config"]["width"] == 8 and back["env"]["device"] == "cpu"


def test_same_seed_same_losses_different_seed_different(cifar):
    tiny = dict(SMALL, epochs=1, train_subset=256, val_size=128, test_subset=128)
    a = train(RunConfig(seed=0, **tiny), cifar, progress=False, log=lambda s: None)
    b = train(RunConfig(seed=0, **tiny), cifar, progress=False, log=lambda s: None)
    c = train(RunConfig(seed=1, **tiny), cifar, progress=False, log=lambda s: None)
    assert a.history["train_loss"] == b.history["train_loss"]
    assert a.history["val_loss"] == b.history["val_loss"]
    assert a.history["train_loss"] != c.history["train_loss"]


def test_huge_learning_rate_diverges_cleanly(cifar):
    cfg = RunConfig(lr=1e3, **{k: v for k, v in SMALL.items() if k != "lr"})
    lines: list[str] = []
    r = train(cfg, cifar, progress=False, log=lines.append, check_every=5)
    assert r.status == "diverged"
    assert re.search(r"epoch 1, step \d+", r.message)
    assert r.test_acc is None
    values = [v for vs in r.history.values() for v in vs if v is not None]
    assert all(math.isfinite(v) for v in values)
    assert lines[-1] == r.message


@pytest.mark.parametrize(
    "change, words",
    [
        (dict(lr=0), "lr must be positive"),
        (dict(batch_size=-1), "batch_size must be positive"),
        (dict(epochs=0), "epochs must be positive"),
        (dict(schedule="warm"), "unknown schedule"),
        (dict(schedule="onecycle"), "max_lr"),
        (dict(optimizer="rmsprop"), "sgd or adamw"),
    ],
)
def test_bad_settings_are_refused_before_training(change, words):
    with pytest.raises(LabError, match=words):
        RunConfig(**change).validate()
