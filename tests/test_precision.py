"""One precision decision (issue #22): bf16 where the processor runs it natively, float32
elsewhere, a forced choice wins, and every result and checkpoint names the one it trained with."""

import dataclasses
import json

import pytest
import torch

from engine.errors import LabError
from engine.runtime import choose_precision, precision_of
from train_utils import RunConfig, train

CPU = torch.device("cpu")
# Small enough for two CPU cores, large enough to learn well above chance (0.10).
SMALL = dict(
    width=8,
    train_subset=2000,
    val_size=500,
    test_subset=500,
    epochs=3,
    batch_size=64,
    norm="standard_exact",
    schedule="constant",
    lr=0.05,
)


def test_a_cpu_without_native_bf16_gets_float32_in_channels_last() -> None:
    # channels_last: 1.2-1.3x faster float32 steps on an AVX2-only EPYC, 1.4-1.5x on an
    # AVX-512 Xeon (#31; `python -m tools.bench --device cpu` shows the ratio)
    p = choose_precision(CPU, "auto", native_bf16=False)
    assert (p.name, p.channels_last) == ("fp32", True)
    assert "lacks native bf16" in p.reason
    assert choose_precision(CPU, "fp32").channels_last


def test_a_cpu_with_native_bf16_gets_bf16_and_channels_last() -> None:
    p = choose_precision(CPU, "auto", native_bf16=True)
    assert (p.name, p.channels_last, p.memory_format) == ("bf16", True, torch.channels_last)
    with p.autocast():
        assert torch.get_autocast_dtype("cpu") == torch.bfloat16
        assert torch.is_autocast_enabled("cpu")


def test_the_flags_decide_where_torch_cannot_tell(monkeypatch) -> None:
    monkeypatch.setattr(
        torch.cpu, "get_capabilities", lambda: {"avx512_bf16": False, "amx_bf16": False}
    )
    assert choose_precision(CPU).name == "fp32"
    monkeypatch.setattr(torch.cpu, "get_capabilities", lambda: {"amx_bf16": True})
    assert choose_precision(CPU).name == "bf16"


@pytest.mark.parametrize("native", [True, False])
def test_a_forced_setting_wins(native: bool) -> None:
    assert choose_precision(CPU, "fp32", native_bf16=native).name == "fp32"
    assert choose_precision(CPU, "bf16", native_bf16=native).name == "bf16"
    assert "forced" in choose_precision(CPU, "bf16", native_bf16=native).reason


def test_an_unknown_precision_is_one_clear_error() -> None:
    with pytest.raises(LabError, match="unknown precision 'fp8'; choose one of auto, bf16, fp32"):
        choose_precision(CPU, "fp8")


def test_the_cli_refuses_an_unknown_precision(capsys) -> None:
    from experiments import cli

    with pytest.raises(SystemExit):
        cli(["run", "baseline", "--profile", "smoke", "--precision", "fp8"])
    assert "invalid choice: 'fp8'" in capsys.readouterr().err


def test_an_older_results_file_reads_as_float32() -> None:
    assert precision_of({"env": {"device": "cpu"}}) == "fp32"
    assert precision_of({"env": {"precision": "bf16"}}) == "bf16"
    assert precision_of({}) == "fp32"
    assert precision_of({"env": {"device": "cuda:0"}}) == "bf16"  # the GPU runs before the field


@pytest.fixture(scope="module")
def both(cifar):
    cfg = RunConfig(name="small", **SMALL)
    return {
        p: train(cfg, cifar, device="cpu", progress=False, log=lambda s: None, precision=p)
        for p in ("bf16", "fp32")
    }


def test_bf16_and_fp32_both_learn_and_agree(both) -> None:
    for p, r in both.items():
        assert r.status == "ok", p
        assert r.env["precision"] == p and r.env["precision_reason"].startswith("forced")
        assert r.history["train_loss"][-1] < r.history["train_loss"][0], p
        assert r.test_acc > 0.25, p  # chance 0.10; its spread on 500 images is ~0.013
    # Same data, seed and init: bf16's 8-bit mantissa moves the trajectory, not where it goes.
    # Measured here: 3-epoch test accuracies within a few points; 0.08 leaves room for seeds.
    assert abs(both["bf16"].test_acc - both["fp32"].test_acc) < 0.08
    assert (
        abs(both["bf16"].history["train_loss"][-1] - both["fp32"].history["train_loss"][-1]) < 0.15
    )


def test_resume_in_another_precision_is_refused_in_one_line(cifar, tmp_path) -> None:
    cfg = RunConfig(name="small", **{**SMALL, "epochs": 2, "train_subset": 256, "test_subset": 64})
    one = dataclasses.replace(cfg, epochs=2)
    kw = dict(device="cpu", progress=False, log=lambda s: None, ckpt_dir=tmp_path)
    train(one, cifar, precision="fp32", ckpt_every=1, **kw)
    with pytest.raises(LabError, match="trained in fp32, this run would continue in bf16") as e:
        train(one, cifar, precision="bf16", resume=True, **kw)
    assert "\n" not in str(e.value) and "--precision fp32" in str(e.value)
    # the same precision resumes
    assert train(one, cifar, precision="fp32", resume=True, **kw).status == "ok"


def test_the_results_file_names_its_precision(cifar, tmp_path) -> None:
    from lab.grid import RunOptions, run_experiment

    options = RunOptions(
        out=tmp_path / "r",
        ckpt_root=tmp_path / "c",
        device="cpu",
        progress=False,
        echo=lambda s: None,
        precision="fp32",
    )
    r = run_experiment("baseline", "smoke", cifar, options=options)
    saved = json.loads((tmp_path / "r" / "smoke" / "baseline__seed0.json").read_text())
    assert r["env"]["precision"] == saved["env"]["precision"] == "fp32"
    assert saved["env"]["precision_reason"]
