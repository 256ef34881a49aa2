"""torch.compile as an execution option: same training as eager, plain checkpoints, clear errors.

On the CPU torch.compile generates C++ through the system compiler (inductor); the test skips
where none is installed. Whether compiling pays for itself is measured by `bench.py --compile`,
not here."""

import json
import shutil

import pytest
import torch

from engine.checkpoint import latest_checkpoint, load_checkpoint
from engine.errors import LabError
from engine.runtime import compile_for_training
from train_utils import RunConfig, train

# 256 training images in batches of 64: every batch has the same shape, so one compilation.
# One epoch: a net this small at chance level drifts apart quickly from rounding differences
# (2% in validation loss after a second epoch), which would hide a real fault.
TINY = dict(
    width=4,
    train_subset=256,
    val_size=200,
    test_subset=200,
    epochs=1,
    batch_size=64,
    norm="standard_exact",
    schedule="constant",
    lr=0.05,
)


def test_unknown_mode_is_one_line_error():
    with pytest.raises(LabError, match="unknown compile mode 'fast'; choose one of default"):
        compile_for_training(torch.nn.Linear(2, 2), "fast")
    with pytest.raises(LabError, match="unknown compile mode 'cuda-graph'"):  # gone (#25)
        compile_for_training(torch.nn.Linear(2, 2), "cuda-graph")


def test_unknown_mode_fails_before_training(cifar):
    with pytest.raises(LabError, match="unknown compile mode"):
        train(RunConfig(**TINY), cifar, progress=False, log=lambda s: None, compile_mode="fast")


def test_eager_is_the_model_itself():
    model = torch.nn.Linear(2, 2)
    assert compile_for_training(model, None) is model


@pytest.mark.slow
@pytest.mark.skipif(
    shutil.which("cc") is None, reason="torch.compile on the CPU needs a C compiler"
)
def test_compiled_run_matches_eager_and_saves_plain_weights(cifar, tmp_path, one_thread_per_module):
    # float32 on every CPU: where bf16 is native (auto's choice) fused and eager kernels round
    # apart by ~0.2% in 4 steps, which would hide the bounds below.
    quiet = dict(progress=False, log=lambda s: None, precision="fp32")
    eager = train(RunConfig(**TINY), cifar, **quiet)
    compiled = train(RunConfig(**TINY), cifar, ckpt_dir=tmp_path, compile_mode="default", **quiet)
    assert compiled.status == "ok" and compiled.env["compile"] == "default"
    assert eager.env["compile"] is None
    # Inductor fuses and reorders float32 arithmetic, so not bit for bit (1e-5 apart in train
    # loss after 4 steps here); a wrong graph (say, BatchNorm in eval mode) is far further off.
    assert compiled.history["train_loss"] == pytest.approx(eager.history["train_loss"], rel=1e-3)
    assert compiled.history["val_loss"] == pytest.approx(eager.history["val_loss"], rel=5e-3)
    for state in (
        load_checkpoint(latest_checkpoint(tmp_path))["model"],
        torch.load(tmp_path / "model.pt", weights_only=True),
    ):
        assert not any(k.startswith("_orig_mod") for k in state)
        assert "conv1.weight" in state


@pytest.mark.slow
@pytest.mark.skipif(
    shutil.which("cc") is None, reason="torch.compile on the CPU needs a C compiler"
)
def test_cli_compile_flag_reaches_the_run(cifar, tmp_path, capsys, one_thread_per_module):
    from conftest import data_location

    from experiments import cli

    # The smoke profile's width-4 net in batches of 64 again: the same graph as above.
    argv = [
        "run",
        "baseline",
        "--profile",
        "smoke",
        "--set",
        "train_subset=256",
        "--set",
        "batch_size=64",
        "--compile",
        "default",
        "--out",
        str(tmp_path),
        "--checkpoints",
        str(tmp_path / "ck"),
        "--no-progress",
        "--data-dir",
        str(data_location()),
    ]
    assert cli(argv) == 0
    (path,) = (tmp_path / "smoke").glob("baseline*__seed0.json")
    result = json.loads(path.read_text())
    assert result["status"] == "ok" and result["env"]["compile"] == "default"
    assert "compile" not in result["config"]  # an execution choice, not part of the run's config
