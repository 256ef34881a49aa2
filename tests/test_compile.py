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
TINY = dict(width=4, train_subset=256, val_size=200, test_subset=200, epochs=1, batch_size=64,
            norm="standard_exact", schedule="constant", lr=0.05)  # fmt: skip


def test_unknown_mode_is_one_line_error():
    with pytest.raises(LabError, match="unknown compile mode 'fast'; choose one of default"):
        compile_for_training(torch.nn.Linear(2, 2), "fast")


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
    eager = train(RunConfig(**TINY), cifar, progress=False, log=lambda s: None)
    compiled = train(RunConfig(**TINY), cifar, progress=False, log=lambda s: None,
                     ckpt_dir=tmp_path, compile_mode="default")  # fmt: skip
    assert compiled.status == "ok" and compiled.env["compile"] == "default"
    assert eager.env["compile"] is None
    # Inductor fuses and reorders float32 arithmetic, so not bit for bit (1e-5 apart in train
    # loss after 4 steps here); a wrong graph (say, BatchNorm in eval mode) is far further off.
    assert compiled.history["train_loss"] == pytest.approx(eager.history["train_loss"], rel=1e-3)
    assert compiled.history["val_loss"] == pytest.approx(eager.history["val_loss"], rel=5e-3)
    for state in (load_checkpoint(latest_checkpoint(tmp_path))["model"],
                  torch.load(tmp_path / "model.pt", weights_only=True)):  # fmt: skip
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
    argv = ["run", "baseline", "--profile", "smoke", "--set", "train_subset=256", "--set",
            "batch_size=64", "--compile", "default", "--out", str(tmp_path), "--checkpoints",
            str(tmp_path / "ck"), "--no-progress", "--data-dir", str(data_location())]  # fmt: skip
    assert cli(argv) == 0
    (path,) = (tmp_path / "smoke").glob("baseline*__seed0.json")
    result = json.loads(path.read_text())
    assert result["status"] == "ok" and result["env"]["compile"] == "default"
    assert "compile" not in result["config"]  # an execution choice, not part of the run's config


def _sgd_steps(graph: bool, steps: int = 3, monkeypatch=None):
    """Three SGD steps (momentum, Nesterov, weight decay, label smoothing, a changing lr) of a
    tiny ResNet18 on fixed random batches, the last batch smaller; the weights afterwards."""
    from engine.runtime import WholeStepGraph, set_lr
    from resnet18 import resnet18
    from train_utils import make_optimizer, optimizer_step

    torch.manual_seed(0)
    model = resnet18(num_classes=10, width=4)
    cfg = RunConfig(width=4, nesterov=True, label_smoothing=0.1)
    opt = make_optimizer(cfg, model)
    g = torch.Generator().manual_seed(1)
    batches = [(torch.randn(n, 3, 32, 32, generator=g), torch.randint(0, 10, (n,), generator=g))
               for n in (16,) * (steps - 1) + (8,)]  # fmt: skip
    step = (
        WholeStepGraph(model, opt, "cpu", cfg.label_smoothing, log=lambda s: None)
        if graph
        else None
    )
    losses = []
    for k, (x, y) in enumerate(batches):
        set_lr(opt, 0.1 / (k + 1))
        if step is not None:
            logits, loss = step(x, y)
        else:
            loss = torch.nn.functional.cross_entropy(model(x), y, label_smoothing=0.1)
            optimizer_step(loss, opt)
        losses.append(loss.item())
    return [p.detach().clone() for p in model.state_dict().values()], losses, step


def test_whole_step_graph_falls_back_on_the_cpu_with_eager_results():
    eager, eager_losses, _ = _sgd_steps(graph=False)
    graphed, graph_losses, step = _sgd_steps(graph=True)
    assert step.graph is None and step.reason == "no CUDA device"
    assert graph_losses == eager_losses
    assert all(torch.equal(a, b) for a, b in zip(eager, graphed))


def test_whole_step_graph_capture_leaves_no_trace_of_its_warm_up(monkeypatch):
    """The capture path on the CPU, CUDA's calls stood in for: the warm-up steps really run and
    must be undone (weights, BatchNorm statistics, momentum), and the replays then train as
    eager does, the epoch's smaller last batch eager."""
    import contextlib

    import engine.runtime as rt

    class FakeGraph:
        step = None

        def replay(self):
            logits, loss = FakeGraph.step._eager(FakeGraph.step.static_x, FakeGraph.step.static_y)
            FakeGraph.step.static_logits.copy_(logits)
            FakeGraph.step.static_loss.copy_(loss)

    class Stream:
        def __init__(self, device=None):
            pass

        def wait_stream(self, other):
            pass

    monkeypatch.setattr(rt.torch.cuda, "Stream", Stream)
    monkeypatch.setattr(rt.torch.cuda, "current_stream", lambda device=None: Stream())
    monkeypatch.setattr(rt.torch.cuda, "stream", lambda s: contextlib.nullcontext())
    monkeypatch.setattr(rt.torch.cuda, "graph", lambda g: contextlib.nullcontext())
    monkeypatch.setattr(rt.torch.cuda, "CUDAGraph", FakeGraph)
    orig_init = rt.WholeStepGraph.__init__

    def init(self, *a, **k):
        orig_init(self, *a, **k)
        self.reason = None  # as if on CUDA
        FakeGraph.step = self

    monkeypatch.setattr(rt.WholeStepGraph, "__init__", init)
    eager, eager_losses, _ = _sgd_steps(graph=False)
    graphed, graph_losses, step = _sgd_steps(graph=True)
    assert isinstance(step.graph, FakeGraph)
    assert graph_losses == pytest.approx(eager_losses, rel=1e-6)
    assert all(torch.allclose(a.float(), b.float(), atol=1e-6) for a, b in zip(eager, graphed))


def test_cuda_graph_mode_trains_like_eager_on_the_cpu(cifar, one_thread_per_module):
    runs = [train(RunConfig(**TINY), cifar, device="cpu", progress=False, log=lambda s: None,
                  compile_mode=mode) for mode in (None, "cuda-graph")]  # fmt: skip
    assert runs[1].env["compile"] == "cuda-graph"
    assert runs[0].history["train_loss"] == runs[1].history["train_loss"]
    assert runs[0].test_acc == runs[1].test_acc
