"""torch.distributed on the CPU (gloo, two processes): one run trained by DDP, and the grid's runs
dealt out by `--distribute runs`. The processes meet at 127.0.0.1 on a free port."""

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from conftest import REPO, data_location

from engine.errors import LabError
from engine.loader import DeviceLoader
from engine.runtime import choose_precision
from engine.schedules import lr_at
from lab.grid import make_config
from resnet18 import resnet18
from train_utils import build_loaders, evaluate, make_optimizer, seed_everything, train

EXPERIMENTS = REPO / "experiments.py"
# The final recipe (strong augmentation, Nesterov, one-cycle, label smoothing, TTA) on the smoke
# profile (400 training images, width 4) cut to 2 epochs of 4 global batches of 100.
DDP_RUN = dict(batch_size=100, epochs=2)
# float32: the ghost-batch reference below steps in float32 (bf16 would round differently)
DDP_ARGS = ["final", "--profile", "smoke", "--set", "batch_size=100", "--set", "epochs=2"]
DDP_ARGS += ["--precision", "fp32"]
FP32 = choose_precision(torch.device("cpu"), "fp32")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def environment(**extra) -> dict:
    """The test's environment for a child: the data, one thread (so that runs compare bit for
    bit), gloo on the loopback interface, and no launcher variables of an outer torchrun."""
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT")
    }
    loopback = next((name for _, name in socket.if_nameindex() if name.startswith("lo")), "lo")
    env.update(
        OMP_NUM_THREADS="1",
        GLOO_SOCKET_IFNAME=loopback,
        PYTHONPATH=str(REPO),
        LAB3_DATA_DIR=str(data_location()),
        LAB3_CACHE_DIR=os.environ.get("LAB3_CACHE_DIR", str(REPO / ".cache")),
    )
    env.update(extra)
    return env


def cli(*args: str) -> list[str]:
    return [sys.executable, str(EXPERIMENTS), "run", *args, "--no-progress", "--device", "cpu"]


@pytest.fixture(scope="module")
def ddp_run(tmp_path_factory):
    """`experiments.py run final ...` as ranks 0 and 1 of a gloo group, the way torchrun starts
    them (RANK, WORLD_SIZE, MASTER_ADDR/PORT), each in a folder of its own so that we can see
    what each one writes."""
    if data_location() is None:
        pytest.skip("CIFAR-10 copy not found")
    root = tmp_path_factory.mktemp("ddp")
    done = launch(cli(*DDP_ARGS), [root / "rank0", root / "rank1"])
    for code, out, err in done:
        assert code == 0, out + err
    return root, [out for _, out, _ in done]


def launch(cmd: list[str], folders: list[Path], timeout: float = 300) -> list[tuple]:
    """Run `cmd` as ranks 0..N-1 of one gloo group, each in its own folder, the way torchrun
    starts them (RANK, WORLD_SIZE, MASTER_ADDR/PORT); (exit code, stdout, stderr) per rank."""
    port = str(free_port())
    procs = []
    for rank, folder in enumerate(folders):
        folder.mkdir(parents=True, exist_ok=True)
        env = environment(
            RANK=str(rank),
            LOCAL_RANK=str(rank),
            WORLD_SIZE=str(len(folders)),
            LOCAL_WORLD_SIZE=str(len(folders)),
            MASTER_ADDR="127.0.0.1",
            MASTER_PORT=port,
        )
        procs.append(
            subprocess.Popen(
                cmd, cwd=folder, env=env, text=True, stdout=subprocess.PIPE, stderr=subprocess.PIPE
            )
        )
    done = []
    try:
        for p in procs:
            try:
                out, err = p.communicate(timeout=timeout)
            except subprocess.TimeoutExpired:  # waiting for a partner that died
                p.kill()
                out, err = p.communicate()
            done.append((p.returncode, out, err))
            timeout = 30  # the others end soon after rank 0 (or hang: see above)
    finally:
        for p in procs:  # no rank outlives the test
            p.kill()
    return done


def ghost_batch_run(cfg, data, parts: int = 2):
    """One process training the way `parts` DDP ranks with per-rank BatchNorm do: every global
    batch is cut into the ranks' parts, each part goes through the model (and its BN statistics)
    alone, and the gradient is that of the parts' mean loss. DDP copies rank 0's BN buffers to
    every rank before each forward pass, so the running statistics kept are part 0's."""
    seed_everything(cfg.seed)
    device = torch.device("cpu")
    (train_dl, val_dl, test_dl), _ = build_loaders(
        cfg, data, device, channels_last=FP32.channels_last
    )
    model = resnet18(num_classes=10, width=cfg.width, zero_init_residual=cfg.zero_init_residual)
    model = model.to(memory_format=FP32.memory_format)  # the layout the DDP ranks train in
    opt = make_optimizer(cfg, model)
    bns = [m for m in model.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    sched = cfg.make_schedule(len(train_dl))
    step, train_loss, val_loss = 0, [], []
    for epoch in range(cfg.epochs):
        model.train()
        total = 0.0
        for x, y in train_dl.batches(epoch):
            for group in opt.param_groups:
                group["lr"] = lr_at(step, cfg.epochs * len(train_dl), sched)
            cuts = [len(y) * k // parts for k in range(parts + 1)]  # as DeviceLoader cuts
            before = [[b.clone() for b in m.buffers()] for m in bns]
            loss = 0.0
            for k in reversed(range(parts)):  # part 0 last: its running statistics stay
                for m, saved in zip(bns, before):  # new tensors: autograd saved the old ones
                    m.running_mean, m.running_var, m.num_batches_tracked = (
                        b.clone() for b in saved
                    )
                xk, yk = x[cuts[k] : cuts[k + 1]], y[cuts[k] : cuts[k + 1]]
                part = F.cross_entropy(model(xk), yk, label_smoothing=cfg.label_smoothing)
                loss = loss + part * len(yk) / len(y)
                total += part.item() * len(yk)
            opt.zero_grad()
            loss.backward()
            opt.step()
            step += 1
        train_loss.append(total / train_dl.num_images)
        val_loss.append(evaluate(model, val_dl, precision=FP32)["loss"])
    test = evaluate(model, test_dl, tta=cfg.tta, tta_shift=cfg.tta_shift, precision=FP32)
    return model, train_loss, val_loss, test


def test_ddp_two_ranks_train_like_one_process_with_ghost_batches(
    ddp_run, cifar, one_thread_per_module
):
    """Per-rank BN makes two ranks with global batch 100 train like one process whose batches
    of 100 are normalized as two halves of 50 (SyncBatchNorm, which would make them train like
    plain batches of 100, runs on CUDA only). Same losses, same weights: with one thread, as the
    ranks have, they come out identical here; a thread count changes the float rounding, which
    a few steps amplify to ~5e-5."""
    root, _ = ddp_run
    cfg = make_config("final", "smoke", 0, DDP_RUN)
    result = json.loads(
        (root / "rank0" / "results" / "smoke" / f"{cfg.name}__seed0.json").read_text()
    )
    assert result["status"] == "ok"
    assert result["env"]["world_size"] == 2 and result["env"]["backend"] == "gloo"
    model, train_loss, val_loss, test = ghost_batch_run(cfg, cifar)
    h = result["history"]
    assert h["train_loss"] == pytest.approx(train_loss, rel=1e-6)
    assert h["val_loss"] == pytest.approx(val_loss, rel=1e-6)
    assert result["test_loss"] == pytest.approx(test["loss"], rel=1e-6)
    # the confusion matrix sums every rank's share of the 400 test images
    assert sum(map(sum, result["confusion"])) == 400
    assert abs(result["test_acc"] - test["acc"]) <= 1 / 400
    saved = torch.load(
        root / "rank0" / "checkpoints" / "smoke" / f"{cfg.name}__seed0_model.pt", weights_only=True
    )
    mine = model.state_dict()
    assert saved.keys() == mine.keys()  # no DDP "module." prefix
    for key, value in mine.items():
        torch.testing.assert_close(saved[key], value, rtol=1e-6, atol=1e-7, msg=key)
    # ...and the expected difference: one process normalizing whole batches of 100 trains
    # otherwise, by far more than the float noise allowed above
    plain = train(cfg, cifar, device="cpu", progress=False, log=lambda line: None, precision="fp32")
    assert max(abs(a - b) for a, b in zip(plain.history["train_loss"], train_loss)) > 1e-4


def test_ddp_rank_one_prints_no_lab_lines_and_writes_nothing(ddp_run):
    root, (out0, out1) = ddp_run
    assert "Epoch: 2" in out0 and "Test loss:" in out0 and "Summary" in out0
    assert out1 == ""
    assert list((root / "rank1").rglob("*")) == []
    assert list((root / "rank0" / "results" / "smoke").glob("*.json"))


RESUMER = """
import json, os, signal, sys
import engine.distributed
from engine.data import load_cifar10
from lab.grid import make_config
from train_utils import train
world, _ = engine.distributed.start("ddp", "cpu")
cfg = make_config("final", "smoke", 0, {"batch_size": 100, "epochs": 2})
def log(line):  # rank 0 dies after epoch 2's validation, before its checkpoint
    if sys.argv[2] == "kill" and line == "Epoch: 2":
        os.kill(os.getpid(), signal.SIGKILL)
r = train(cfg, load_cifar10(download=False), ckpt_dir=sys.argv[1], resume=True, progress=False,
          world=world, precision="fp32", log=log)
if world.is_main:
    json.dump(r.history, open("history.json", "w"))
engine.distributed.stop()
"""


@pytest.mark.slow  # 17 s: two more launches of two processes
def test_ddp_resume_after_rank_zero_dies_equals_the_uninterrupted_run(ddp_run, tmp_path):
    root, _ = ddp_run
    script = tmp_path / "resumer.py"
    script.write_text(RESUMER)
    ranks = [tmp_path / "rank0", tmp_path / "rank1"]
    ckpt = str(tmp_path / "ckpt")
    killed = launch([sys.executable, str(script), ckpt, "kill"], ranks, timeout=120)
    assert killed[0][0] == -9 and killed[1][0] != 0  # rank 1 stops too: its partner is gone
    assert [p.name for p in sorted((tmp_path / "ckpt").glob("epoch_*.pt"))] == ["epoch_001.pt"]
    resumed = launch([sys.executable, str(script), ckpt, "go"], ranks)
    assert [code for code, _, _ in resumed] == [0, 0], resumed
    cfg = make_config("final", "smoke", 0, DDP_RUN)
    whole = json.loads(
        (root / "rank0" / "results" / "smoke" / f"{cfg.name}__seed0.json").read_text()
    )
    history = json.loads((ranks[0] / "history.json").read_text())
    for key in ("train_loss", "train_acc", "val_loss", "val_acc", "lr"):
        assert history[key] == whole["history"][key], key
    assert not (ranks[1] / "history.json").exists()


def result_files(folder: Path) -> dict[str, dict]:
    return {p.name: json.loads(p.read_text()) for p in sorted(folder.glob("*.json"))}


def test_distribute_runs_deals_whole_runs_and_matches_one_process(tmp_path):
    """Two ranks deal out 2 experiments x 2 seeds; each run happens once, on one rank, and its
    results file equals one process's bit for bit (all but times and the command line)."""
    if data_location() is None:
        pytest.skip("CIFAR-10 copy not found")
    grid = ["norm_minmax", "norm_std_exact", "--seeds", "2", "--profile", "smoke"]
    torchrun = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--nnodes",
        "1",
        "--nproc-per-node",
        "2",
        "--master-addr",
        "127.0.0.1",
        "--master-port",
        str(free_port()),
        "--redirects",
        "3",
        "--log-dir",
        "logs",
    ]
    two = subprocess.run(
        torchrun + cli(*grid, "--distribute", "runs", "--out", "two", "--checkpoints", "ck2")[1:],
        cwd=tmp_path,
        env=environment(),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert two.returncode == 0, two.stdout + two.stderr
    one = subprocess.run(
        cli(*grid, "--out", "one", "--checkpoints", "ck1"),
        cwd=tmp_path,
        env=environment(),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert one.returncode == 0, one.stdout + one.stderr
    # torchrun kept each rank's output in logs/<run id>/attempt_0/<rank>/stdout.log
    out = {int(p.parent.name): p.read_text() for p in (tmp_path / "logs").rglob("stdout.log")}
    assert out.keys() == {0, 1}
    runs = [(name, seed) for name in ("norm_minmax", "norm_std_exact") for seed in (0, 1)]
    for i, (name, seed) in enumerate(runs):  # rank r took runs r and r+2, each once
        header = f"[{name} seed {seed}, profile smoke]"
        assert out[i % 2].count(header) == 1 and header not in out[1 - i % 2], out
    assert "replaying" not in out[0] + out[1]
    assert "Summary (rank 1 of 2):" in out[1]
    a, b = result_files(tmp_path / "two" / "smoke"), result_files(tmp_path / "one" / "smoke")
    assert a.keys() == b.keys() and len(a) == 4
    for name in a:
        for key in (
            "history",
            "test_loss",
            "test_acc",
            "confusion",
            "config",
            "norm_stats",
            "status",
        ):
            if key == "history":
                a[name][key].pop("seconds"), b[name][key].pop("seconds")
            assert a[name][key] == b[name][key], (name, key)
        assert a[name]["env"]["world_size"] == 1  # each run trained alone


def test_each_rank_takes_its_part_of_every_global_batch():
    n, batch = 103, 20  # the last batch (3 images) is shared unevenly
    images = (torch.arange(n) % 256).to(torch.uint8).view(n, 1, 1, 1).expand(n, 3, 8, 8)
    common = dict(mean=(0.0,) * 3, std=(1.0,) * 3, augment="crop_flip", shuffle=True, seed=4)
    one = DeviceLoader(images.contiguous(), torch.arange(n), batch, **common)
    ranks = [
        DeviceLoader(images.contiguous(), torch.arange(n), batch, rank=r, world_size=3, **common)
        for r in range(3)
    ]
    for epoch in (0, 1):
        together = list(zip(*(dl.batches(epoch) for dl in ranks)))
        for i, ((x, y), parts) in enumerate(zip(one.batches(epoch), together)):
            assert torch.equal(torch.cat([p[1] for p in parts]), y)
            assert torch.equal(torch.cat([p[0] for p in parts]), x)
            # the weights make DDP's average of the ranks' means (here of the labels) the
            # global batch's mean, also when the parts differ in size (7, 7, 6 and 1, 1, 1)
            means = [p[1].double().mean() for p in parts]
            ddp_average = sum(dl.weight(i) * m for dl, m in zip(ranks, means)) / 3
            assert ddp_average.item() == pytest.approx(y.double().mean().item())
    assert all(len(dl) == len(one) for dl in ranks)


def test_a_batch_too_small_to_share_is_refused():
    images = torch.zeros(41, 3, 8, 8, dtype=torch.uint8)
    with pytest.raises(LabError, match="cannot be shared by 2 processes"):
        DeviceLoader(
            images, torch.zeros(41, dtype=torch.long), 20, (0,) * 3, (1,) * 3, rank=0, world_size=2
        )
