# ---
# jupyter:
#   jupytext:
#     text_representation:
#       extension: .py
#       format_name: percent
#       format_version: '1.3'
#       jupytext_version: 1.19.7
#   kernelspec:
#     display_name: Python 3 (ipykernel)
#     language: python
#     name: python3
# ---

# %% [markdown]
# # Lab 3: ResNet18 on CIFAR-10, a tuning lab
#
# This notebook trains the hand-written ResNet18 of `resnet18.py` on CIFAR-10 and compares a
# baseline with one change at a time: input normalization, data augmentation, the learning
# rate and its update strategy, the batch size. It ends with a final model (experiment
# `final`), its test accuracy and its confusion matrix.

# %% [markdown]
# ## 1. Set-up
#
# The first cell holds the parameters (papermill's `-p NAME VALUE` overrides them; README lists
# them). The second loads CIFAR-10 and prints what this execution will do: the profile, the
# data (named by its content), the device and the precision, and which runs are replayed from
# their saved results and which are trained. Unless the profile is `full`, its first output is
# a banner saying that everything below is a preview.

# %% tags=["parameters"]
import os

from lab import grid

PROFILE = os.environ.get("LAB3_PROFILE") or grid.default_profile()  # full | cpu | quick | smoke
DATA_DIR = os.environ.get("LAB3_DATA_DIR")  # None: ./data (see data.py)
RESULTS_DIR = os.environ.get("LAB3_RESULTS_DIR", "results")
PLOTS_DIR = os.environ.get("LAB3_PLOTS_DIR")  # None: plots/<profile>
CHECKPOINTS_DIR = os.environ.get("LAB3_CHECKPOINTS_DIR", "checkpoints")
FORCE = os.environ.get("LAB3_FORCE") in ("1",)  # retrain even if results exist
TRAIN_MISSING = os.environ.get("LAB3_TRAIN_MISSING", "1") not in ("0",)  # False: replay only
SEEDS = int(os.environ.get("LAB3_SEEDS") or 0)  # 0: the profile's default (3 on full, else 1)
RESUME = True  # continue an interrupted run from its newest checkpoint
COMPILE = os.environ.get("LAB3_COMPILE") or None  # None: eager; e.g. "reduce-overhead"
PRECISION = os.environ.get("LAB3_PRECISION") or "auto"  # auto | bf16 | fp32

# %%
import dataclasses
import math
from pathlib import Path

import torch

from engine import augment, data, plotting, runtime, schedules
from engine.runtime import check_compile_mode, pick_device
from lab import lr_finder, notebook, stats
from lab.notebook import Lab, brief, describe_setup, n_params, provenance, show_code, stem_table
from lab.notebook import lr_range as run_lr_range
from resnet18 import BasicBlock, ResNet18, resnet18
from tools.cost import projected_cost
from train_utils import RunConfig

# %%
check_compile_mode(COMPILE)  # a typo fails here, not after the first replayed runs
SEEDS = SEEDS or grid.default_seeds(PROFILE)  # here, after papermill's -p PROFILE
PLOTS = Path(PLOTS_DIR or Path("plots") / PROFILE)
PLOTS.mkdir(parents=True, exist_ok=True)
DEVICE = pick_device()
DATA = data.load_cifar10(DATA_DIR)  # decoded once, then read from a uint8 cache
BASE = grid.make_config("baseline", PROFILE)  # the baseline in this profile
lab = Lab(
    PROFILE,
    DATA,
    DEVICE,
    RESULTS_DIR,
    CHECKPOINTS_DIR,
    PLOTS,
    SEEDS,
    FORCE,
    TRAIN_MISSING,
    RESUME,
    COMPILE,
    PRECISION,
)
notebook.show_markdown(notebook.preview_banner(lab) or f"Profile `{PROFILE}`: the lab's own runs.")
setup_lines = describe_setup(lab)
# Before anything trains: the images this notebook is about to train here, and the minutes a few
# measured steps project for them (tools/cost.py). Choose fewer seeds or groups if it is hours.
COST = projected_cost(PROFILE, SEEDS, RESULTS_DIR, DEVICE, TRAIN_MISSING, FORCE)

# %% [markdown]
# A few training images with their labels (a seeded random draw: the files are stored class
# by class).

# %%
pick = torch.randperm(len(DATA.train_labels), generator=torch.Generator().manual_seed(0))[:32]
fig = plotting.show_images(
    DATA.train_images[pick],
    DATA.train_labels[pick],
    DATA.classes,
    title="CIFAR-10 training images",
    path=PLOTS / "samples.png",
)

# %% [markdown]
# ## 2. The model: a hand-written ResNet18
#
# `resnet18.py` follows Table 1 of He et al. 2015, "Deep Residual Learning for Image
# Recognition", with torchvision's module names (a torchvision state dict loads into it).
#
# - **BasicBlock**: two 3x3 convolutions, each followed by BatchNorm, with a ReLU after the
#   first; the block's input is added to the output (`out += identity`) before the last ReLU.
#   The two convolutions learn a *residual* F(x), the block outputs relu(F(x) + x), so a block
#   that has nothing to add can stay close to the identity, and gradients reach early layers
#   through the additions.
# - **Shortcuts**: the identity where the shapes match. The first block of stages 2 to 4
#   halves the resolution (stride 2) and doubles the channels, so its shortcut is a
#   projection: a 1x1 convolution with stride 2 followed by BatchNorm (option B of section 3.3).
# - **`make_layer(block, channels, num_blocks, stride)`** builds one stage: its first block
#   gets the stride and, when the shape changes, the projection; the others keep the shape.
#   ResNet18 is a stem, four stages of two blocks, global average pooling and one linear
#   layer: 1 + 4 x 2 x 2 + 1 = 18 layers with weights.
# - **CIFAR vs ImageNet stem**: the ImageNet stem (7x7 convolution with stride 2, then a 3x3
#   max-pool with stride 2) divides the resolution by 4 before the first stage, which suits
#   224x224 images; on a 32x32 image the last stage would see 1x1 maps. The CIFAR stem (one
#   3x3 convolution, stride 1, no pooling, as in the paper's own CIFAR nets, section 4.2)
#   keeps 32x32 into `layer1` and ends on 4x4. The table below measures both with forward
#   hooks on a 32x32 input. The head pools adaptively, so any input size works.


# %%
cifar, imagenet = resnet18(stem="cifar"), resnet18(stem="imagenet")
notebook.show_markdown(stem_table(cifar, imagenet))
print(
    f"ResNet18, width 64, CIFAR stem: {n_params(cifar):,} parameters "
    f"(ImageNet stem: {n_params(imagenet):,})"
)
print(
    f"profile {PROFILE} trains width {BASE.width}: {n_params(resnet18(width=BASE.width)):,} parameters"
)
print("\nThe first block of layer2, with its projection shortcut (`downsample`):")
print(cifar.layer2[0])

# %% [markdown]
# The two pieces of the skeleton I completed, as `resnet18.py` has them: the block's forward
# pass reads one operation a line, from `identity = x` to `out += identity`, and `make_layer`
# hands the first block of a stage its stride and, when the shape changes, the projection.

# %%
show_code(BasicBlock, ResNet18.make_layer)

# %% [markdown]
# ## 3. Baseline
#
# The handout's run: inputs scaled to [0, 1] and not normalized, no augmentation, SGD with
# momentum and weight decay, a step-decay learning rate, printed below with every other
# setting. The validation set is held out of the 50,000 training images and scored every
# epoch; the test set is used once, at the end. Each line below is one epoch, in the
# handout's format; a replayed run prints its saved log.

# %%
for key, value in dataclasses.asdict(BASE).items():
    print(f"  {key:<20} {value}")

# %% [markdown]
# **How a step is implemented.** For every batch `train()` (`train_utils.py`) sets the
# learning rate the schedule gives for that step, then takes one step: the forward pass
# under the precision's autocast, the cross-entropy loss, the backward pass and the
# optimizer's update. After each epoch it scores the validation split with the network in
# evaluation mode (BatchNorm's running statistics, no gradients) and writes a checkpoint.

# %%
show_code(runtime.train_step, runtime.optimizer_step)

# %%
baseline = lab.run(["baseline"])

# %%
lab.show(baseline, "baseline")

# %%
HANDOUT_BASELINE = 0.866  # the test accuracy the handout reports for this run
print(f"the handout's baseline: Test acc: {HANDOUT_BASELINE:.4f}")

# %% [markdown]
# **Discussion of the committed `full` results** (`results/full/`, one GPU, the JPEG copy).
# The log shows the two phases of the step schedule. While the learning rate is
# 0.05 (epochs 1 to 10) the training loss falls steadily, but the validation loss is lowest
# around epoch 5 and then drifts up with large jumps from one epoch to the next, while the
# validation accuracy hovers between 0.7430 and 0.7694: the network is already fitting its
# training images better than it generalizes, and the large steps keep it bouncing around.
# At the first halving (epoch 11, lr 0.025) both curves jump: the training loss drops from
# 0.1796 to 0.0494 and the validation accuracy from 0.7478 to 0.8154. Two epochs later the
# training accuracy is 1.0000 and stays there: every training image is memorized, the training
# loss is almost zero, and the last seven epochs only move the validation accuracy by a few
# tenths of a point. This is overfitting in its plainest form, with nothing (no augmentation,
# only weight decay) to stop it.
#
# The two seeds end at 0.8259 and 0.8236, below the handout's 0.8660. Their provenance lines
# say why I do not read this gap as a mistake in the model: they were trained on a JPEG copy
# of CIFAR-10 (quality 75, colour subsampled), which loses detail the network could use. The
# same run on the lossless images is the next run to make; until then this gap is a property
# of the data copy, not a measured property of the recipe.

# %% [markdown]
# ## 4. One change at a time
#
# Each group below says what changes and what to look for, trains or replays its runs,
# overlays their curves on the baseline's and tables their best validation accuracy, test
# loss and accuracy and seconds per epoch, as mean ± std over seeds (the number of seeds in
# brackets). The last columns compare each run with the baseline: the difference in test
# accuracy with its 95% confidence interval, and a verdict: *better* or *worse* when the whole
# interval lies on one side of zero, *within noise* when it contains zero. Two seeds of one
# configuration differ by about as much as many of these changes, so a single run proves
# little; with one seed per run the verdict is *n too small*.
#
# Each run prints the handout's log lines: the first and last two epochs of a replayed run
# (every epoch is in its results file, `log`), then its test line.
#
# ### 4.1 Input normalization
#
# **What changes**: how pixels are scaled before the network.
# `none` keeps [0, 1] (the baseline); `minmax` maps each channel's min..max over the training
# images to [-1, 1]; `standard_sampled` standardizes each channel, (x - mean) / std, with the
# lab's `get_mean_std`, which estimates the statistics from a random 30% of the training
# images; `standard_exact` uses every training image. The statistics always come from the
# training split only, never from validation or test images.
#
# **What to look for**: centred inputs help the first layer most in the first epochs; the
# BatchNorm right after the first convolution re-normalizes its output anyway, so the final
# differences are expected to be small. The sampled statistics should differ from the exact
# ones by too little to matter: the cell below prints by how much.

# %%
train_idx, _ = data.split_train_val(len(DATA.train_labels), BASE.val_size, BASE.split_seed)
train_images = DATA.train_images[train_idx]  # the training split: validation images excluded
exact_mean, exact_std = data.normalization_stats("standard_exact", train_images)
print(f"{len(train_images):,} training images, per channel (R, G, B), on the [0, 1] scale")
print(f"exact (all images):           mean {exact_mean}  std {exact_std}")
for seed in range(3):
    mean, std = data.get_mean_std(train_images, ratio=0.3, seed=seed)
    gap = max(abs(x - y) for x, y in zip(mean + std, exact_mean + exact_std))
    print(
        f"get_mean_std(ratio=0.3, seed={seed}): mean {mean}  std {std}  "
        f"largest difference from exact {gap:.1e}"
    )
centre, half_range = data.normalization_stats("minmax", train_images)
print(f"minmax: (x - {centre}) / {half_range}")

# %%
norm = lab.run(grid.GROUPS["norm"], echo=brief)
provenance(norm)
print("\nStatistics each run normalized with (saved in its results):")
for name, rs in {"baseline": lab.runs.get("baseline", []), **norm}.items():
    for r in rs[:1]:
        s = r["norm_stats"]
        print(f"  {name:<18} {s['mode']:<17} mean {s['mean']}  std {s['std']}")

# %%
fig = lab.overlay(norm, "Input normalization", "norm_overlay.png")

# %%
norm_rows, text = lab.compare(norm)
notebook.show_markdown(text)

# %% [markdown]
# **Discussion of the committed `full` results** (`results/full/`, one GPU, the JPEG copy).
# The three normalizations end within a few tenths of a point of each other
# and of the baseline (test accuracy 82.31%, 82.50% and 82.45% against the baseline's
# 82.47 ± 0.16% over two seeds), one seed each, so the table rightly gives no verdict. This is
# what the principle predicts for this network: the first convolution is followed by
# BatchNorm, which re-centres and re-scales its output whatever the input's scale, so input
# normalization can only change the first few updates of the first layer. The statistics
# themselves show why the sampled and exact variants cannot differ: `get_mean_std` on 30% of
# the images differs from the exact mean and std by at most 1.7e-03, far below anything a
# network would notice. I keep standardization with the exact statistics for the final model
# because it is the usual input of the recipes I build on, not because this group proved it
# better.

# %% [markdown]
# **How it is implemented**: the statistics each mode uses, computed on the training split
# (`engine/data.py`); the loader then applies `(x - mean) / std` to every batch.

# %%
show_code(data.normalization_stats, data.get_mean_std)

# %% [markdown]
# ### 4.2 Data augmentation
#
# **What changes**: each training batch is transformed at random, a new draw every epoch
# (`engine/augment.py`; validation and test images are never augmented). `crop_flip` is the
# standard CIFAR recipe: a random 32x32 crop of the image padded by 4 pixels and a horizontal
# flip with probability one half. The other presets add to it: a small rotation
# (`crop_flip_rotate`), colour jitter (`crop_flip_jitter`), Gaussian pixel noise
# (`crop_flip_noise`), or a 16x16 cutout square kept inside the image (`strong`, after DeVries
# & Taylor 2017, whose square may cross the border and so hides less). `crop_flip_cutout8`
# adds an 8x8 square (Myrtle.ai's recipe); `translate_flip_cutout12` pads by reflecting the
# border instead of zeros and adds a 12x12 square: the final model's (section 5). The samples
# below show what each preset does to the same eight images (cutout is drawn black here; in
# training it is the channel mean, 0 after normalization).
#
# **What to look for**: augmentation is a regularizer. The gap between training and
# validation accuracy narrows, the validation loss ends lower than the baseline's, and the
# training accuracy stays below the baseline's: each epoch's images are harder. With
# few epochs, strong augmentation can still be behind: it needs longer training to pay off.

# %%
pick = torch.randperm(len(DATA.train_labels), generator=torch.Generator().manual_seed(1))[:8]
images, labels = DATA.train_images[pick], DATA.train_labels[pick]
for preset in augment.PRESETS:
    # mean 0, std 1: the augmented images stay on the [0, 1] scale, ready to draw
    x = augment.augment_batch(
        images, preset, torch.zeros(3), torch.ones(3), torch.Generator().manual_seed(2)
    )
    fig = plotting.show_images(
        x,
        labels,
        DATA.classes,
        ncols=8,
        title=f"augment: {preset}",
        path=PLOTS / f"augment_{preset}.png",
    )

# %%
aug = lab.run(grid.GROUPS["aug"], echo=brief)
provenance(aug)

# %%
fig = lab.overlay(aug, "Data augmentation", "aug_overlay.png")

# %%
aug_rows, text = lab.compare(aug)
notebook.show_markdown(text)

# %% [markdown]
# **Discussion of the committed `full` results** (`results/full/`, one GPU, the JPEG copy).
# This group surprised me. Augmentation is supposed to reduce overfitting,
# yet with one seed each only colour jitter (0.8372) ends above the baseline (82.47% over two
# seeds), while crop and flip alone ends at 0.8060. Two things in the set-up explain why this
# does not contradict the principle. First, the baseline's schedule never goes below half its
# starting rate and the test is scored at the last epoch: a network trained on ever-changing
# images needs more epochs and a small final learning rate to settle, and these runs get
# neither in 20 epochs. Second, the training accuracy of these runs is measured on the
# augmented batches they train on, which are harder than the clean images, so the gap to the
# validation accuracy (0.8988 against 0.8212 at the last epoch of crop and flip) is not the
# gap the baseline shows, where every clean training image is right; I do not read the
# train/validation gap of this group as a measure of overfitting. The run that would settle the question, crop and flip with the learning rate
# annealed to zero, is what the final recipe does (section 5); on its own it is still to be
# run.

# %% [markdown]
# **How it is implemented** (`engine/augment.py`): the random choices are drawn for the whole
# batch at once, the crop and flip are a gather on the uint8 batch, and the rest runs on the
# float batch; cutout comes after normalization, so its square is 0: black for runs without
# normalization (as all the `aug` runs here), the mean colour for normalized ones.

# %%
show_code(augment.apply, augment.float_steps, augment.cutout)

# %% [markdown]
# ### 4.3 Learning rate and its update strategy
#
# **What changes**: the base learning rate (smaller and larger than the baseline's), and the
# strategy that updates it step by step (`engine/schedules.py`): `constant`; `step` decay (the
# baseline: halved at fixed epochs); `cosine` annealing to zero (Loshchilov & Hutter 2017);
# `cyclical`, a triangle wave between a lower and an upper bound (Smith 2017); `onecycle`,
# one linear rise to a peak then a long anneal (Smith & Topin 2017). The first figure draws
# every schedule from each experiment's own configuration, step by step, exactly as training
# applies it.
#
# **What to look for**: too small a rate learns slowly (all curves lag); too large a rate
# makes the first epochs noisy and can diverge (a run that diverges stops and is reported as
# such). Schedules that end on a small rate (cosine, one-cycle, step) show a last drop of the
# validation loss, which a constant rate never gets.

# %%
curves = {}
for name in ["baseline", *grid.GROUPS["lr"]]:
    cfg = grid.make_config(name, PROFILE)
    steps_per_epoch = math.ceil(stats.train_size(dataclasses.asdict(cfg)) / cfg.batch_size)
    curves[name] = schedules.lr_curve(
        cfg.epochs * steps_per_epoch, cfg.make_schedule(steps_per_epoch)
    )
print(f"{steps_per_epoch} steps per epoch, {cfg.epochs} epochs in profile {PROFILE}")
fig = plotting.plot_lr_schedules(curves, steps_per_epoch, path=PLOTS / "lr_schedules.png")

# %% [markdown]
# **The LR range test** (Smith 2015, section 3.3; `lab/lr_finder.py`) trains the baseline's model
# from scratch for about a hundred steps while the learning rate grows exponentially from
# tiny to huge. The loss stays flat while the rate is too small to move it, falls over the
# useful range, then blows up. The suggested peak (`max_lr`) is the rate at the lowest
# smoothed loss divided by a safety factor, and the lower bound (`base_lr`) a fraction of the
# peak (both factors are printed below). The test
# is saved to `results/<profile>/lr_range.json` (or run with `python -m lab.lr_finder`) and
# replayed like the runs.

# %%
lr_range = run_lr_range(lab, BASE)
if lr_range is not None:
    fig = lr_finder.plot_lr_range(lr_range, PLOTS / "lr_range.png")

# %%
lr = lab.run(grid.GROUPS["lr"], echo=brief)
provenance(lr)

# %%
fig = lab.overlay(lr, "Learning rate and schedule", "lr_overlay.png")

# %%
lr_rows, text = lab.compare(lr)
notebook.show_markdown(text)

# %% [markdown]
# **Discussion of the committed `full` results** (`results/full/`, one GPU, the JPEG copy).
# None of the six learning-rate runs has been trained on the full profile yet
# (the list above says "not run"), so this section has no result to discuss: the schedule
# figure and the LR range test are all it shows. The range test already says something useful:
# its suggested peak lies below the baseline's 0.05, which is consistent with the baseline's
# noisy first phase.

# %% [markdown]
# **How it is implemented** (`engine/schedules.py`): every strategy is a pure function of the
# step, evaluated before each optimizer step.

# %%
show_code(schedules.lr_at, schedules._base)

# %% [markdown]
# ### 4.4 Batch size
#
# **What changes**: the batch size, smaller and larger than the baseline's, each twice: with
# the baseline's learning rate, and with the rate scaled in proportion to the batch
# (`_scaled`, the linear scaling rule of Goyal et al. 2017, with a short warm-up for the
# largest batch).
#
# **What to look for**: the number of optimizer steps per epoch falls as the batch grows.
# At a fixed learning rate and number of epochs a large batch makes fewer, less noisy
# updates and falls behind; scaling the rate recovers part of that. Small batches add
# gradient noise, which regularizes, but take longer per epoch because the device is
# under-used. The first table measures steps per epoch, seconds per epoch (the first epoch
# excluded: it includes warm-up costs), images per second and the peak GPU memory; on a
# CPU there is no GPU memory to report. Runs that shared a device (see the notes printed
# with each run) measured their seconds under that contention.

# %%
batch = lab.run(grid.GROUPS["batch"], echo=brief)
provenance(batch)

# %%
fig = lab.overlay(batch, "Batch size", "batch_overlay.png")

# %%
if batch:
    both = (
        {"baseline": lab.runs.get("baseline", []), **batch}
        if "baseline" in lab.runs
        else dict(batch)
    )
    notebook.show_markdown(stats.format_table(stats.batch_table(both)))

# %%
batch_rows, text = lab.compare(batch)
notebook.show_markdown(text)

# %% [markdown]
# **Discussion of the committed `full` results** (`results/full/`, one GPU, the JPEG copy).
# As for the learning rate, none of the batch-size runs has been trained on
# the full profile yet, so there is nothing measured to discuss here.

# %% [markdown]
# **How it is implemented**: each batch experiment is the baseline with another `batch_size`
# and, for the `_scaled` runs, the lr multiplied by batch / 128 (`lab/grid.py`); the warm-up
# is part of the schedule that `RunConfig.make_schedule` builds.

# %%
for name, change in grid.GROUPS["batch"].items():
    print(f"{name:<16} baseline + {change}")
show_code(RunConfig.make_schedule)

# %% [markdown]
# ## 5. Final model
#
# A published recipe rather than a search on the test set. The anchor is the ResNet-18 baseline
# of Keller Jordan's airbench work (Jordan 2024, `train_resnet18_94.py`), chosen because it was
# tuned for exactly this network, the CIFAR ResNet-18 of section 2: 26 epochs at batch
# 500, Nesterov SGD with momentum 0.9 and weight decay 5e-4, a triangular schedule (lr 0.04 up
# to 0.2 at 20% of the steps, then linearly to 0), standardized inputs, a random translation by
# up to 4 pixels with reflected borders, a flip and one 12x12 cutout square, no label smoothing.
# At test time the logits are averaged over the image, its mirror and both shifted by one pixel.
# Its reported accuracies are printed below; they are means of 200 runs on all 50,000 training
# images, where this lab trains on 45,000 and keeps 5,000 for validation.
# Myrtle.ai's recipe (Page 2018), which this section used before, was tuned for Myrtle's own
# ResNet variant. `FINAL_WHY` in `lab/grid.py`, printed below, names the run of this grid or
# the paper behind each setting. The test set is used once, at the end.
#
# A recipe tuned for thousands of steps can wreck a network given a few dozen: a preview that
# climbed to its peak lr in 16 steps blew up. So the recipe is fitted to the run. On a subset
# the batch halves (not below 32) to keep about the anchor's 90 steps an epoch
# (`schedules.fitted_batch`); the lr scales with batch / 500 and peaks lower, in proportion,
# when the climb is shorter than `MIN_RISE_STEPS` steps (`schedules.scaled_peak`). The `full`
# profile keeps batch 500 and the peak of 0.2.

# %%
print("anchor, airbench's ResNet-18 baseline (Jordan 2024, mean of 200 runs, 50,000 images):")
print("  test accuracy 93.4-93.5% without test-time augmentation, 94.0% with mirror + translate")
print("final = baseline +", grid.EXPERIMENTS["final"])
for setting, why in grid.FINAL_WHY.items():
    print(f"  {setting:<28} {why}")
cfg = grid.make_config("final", PROFILE)
steps = math.ceil(stats.train_size(dataclasses.asdict(cfg)) / cfg.batch_size)
print(
    f"in profile {PROFILE}: batch {cfg.batch_size}, {cfg.epochs} epochs of {steps} steps, peak lr "
    f"{cfg.make_schedule(steps).max_lr:.3g} (the recipe's {cfg.max_lr} from a rise of "
    f"{grid.MIN_RISE_STEPS} steps or more)"
)
final = lab.run(["final"])

# %%
lab.show(final, "final")

# %% [markdown]
# **Discussion of the committed `full` results** (`results/full/`, one GPU, the JPEG copy).
# The final run saved for this profile is not yet the recipe described above:
# the warning printed with its log says so, and its configuration (batch 512, a one-cycle
# schedule, 50 epochs, a 16x16 cutout with label smoothing) is an earlier recipe of mine. It
# reached a test accuracy of 0.9144 on the JPEG copy, above the lab's 90% target and about 9
# points above the baseline on the same data. That gain is the combined effect of what the
# groups above isolate: standardized inputs, augmentation that keeps the network from
# memorizing its training set, a schedule that warms up and then anneals to almost zero, and
# test-time flipping. The airbench-anchored recipe has not been trained at full scale yet; its
# own figure will replace this one, and I will compare it with the anchor's printed above.

# %% [markdown]
# The confusion matrix of the final model on the test set (rows: true class, normalized per
# row), with each class's accuracy on the left axis; the table after it lists the classes
# from the hardest to the easiest.

# %%
done = [r for r in final.get("final", []) if r.get("confusion")]
if done:
    r = done[0]
    fig = plotting.plot_confusion(
        r["confusion"],
        DATA.classes,
        title=f"final, seed {r['seed']}: test set ({PROFILE})",
        path=PLOTS / "final_confusion.png",
    )
    conf = torch.tensor(r["confusion"], dtype=torch.float64)
    per_class = conf.diag() / conf.sum(1).clamp(min=1)
    lines = ["| class | test accuracy | most often mistaken for |", "| --- | ---: | --- |"]
    for i in per_class.argsort().tolist():
        off = conf[i].clone()
        off[i] = -1
        lines.append(
            f"| {DATA.classes[i]} | {100 * per_class[i]:.1f}% | {DATA.classes[int(off.argmax())]} |"
        )
    notebook.show_markdown("\n".join(lines))
else:
    print("no finished final run")

# %% [markdown]
# ### Every run
#
# Every experiment of this notebook against the baseline, the final model included.

# %%
all_rows, text = lab.compare(lab.runs)
notebook.show_markdown(text)
if lab.not_run:
    print(f"not run (no saved results, replay only): {', '.join(lab.not_run)}")

# %%
TARGET = 0.90  # the lab's goal: more than 90% test accuracy
finished = [r for r in all_rows if r["test_acc"]["mean"] is not None]
if finished:
    best = max(finished, key=lambda r: r["test_acc"]["mean"])
    verdict = "reaches" if best["test_acc"]["mean"] > TARGET else "does not reach"
    text = (
        f"In profile `{PROFILE}` the best run, **{best['name']}**, {verdict} the lab's "
        f"target of {TARGET:.0%}: {100 * best['test_acc']['mean']:.2f}% test accuracy "
        f"(mean of {best['test_acc']['n']})."
    )
    if PROFILE != "full":
        text += (
            " This profile is a preview (smaller data, a narrower net, fewer epochs);"
            " the target applies to `full`."
        )
    notebook.show_markdown(text)
saved = sorted(Path(RESULTS_DIR, PROFILE).glob("*.json"))
print(f"results of profile {PROFILE}: {len(saved)} files in {Path(RESULTS_DIR, PROFILE)}/")
print(f"figures saved in {PLOTS}/: {', '.join(sorted(p.name for p in PLOTS.glob('*.png')))}")

# %% [markdown]
# ## 6. Difficulties met, and how I solved them
#
# - **A baseline below the handout's.** My first full runs scored well under the handout's
#   baseline. Before touching the model I checked the data: the offline copy I had was JPEG
#   (quality 75, colour stored at half resolution), which loses the fine detail a 32x32 image
#   has little of. Its channel statistics were close to the official ones, so nothing looked
#   wrong until I compared the pixels. I switched to a lossless copy in the official order
#   (the data loader now names the copy by its content in every result), and kept the JPEG runs
#   labelled as such.
# - **Previews wrecked by a recipe meant for long runs.** The final recipe's peak learning rate
#   is reached after hundreds of steps on the full data; on a small CPU preview the same
#   schedule climbed to the peak in a handful of steps and the network blew up. The fix keeps
#   the recipe unchanged on the full profile and, on a subset, halves the batch to keep about
#   as many steps an epoch and caps how fast the learning rate may rise
#   (`schedules.fitted_batch`, `schedules.scaled_peak`).
# - **Training time without a GPU.** In float32 a full run takes hours on a laptop CPU. The
#   processor I worked on computes bfloat16 in hardware, and bf16 autocast with the
#   channels-last memory layout trains about twice as fast there; the code chooses it only
#   where the processor has native bfloat16 (elsewhere it would be slower than float32) and
#   records the precision in every result.
# - **Reading the curves honestly.** With augmentation the training accuracy is measured on the
#   augmented batches, so it is not comparable with the validation accuracy as a measure of
#   overfitting (section 4.2); and with one seed per run, differences of a few tenths of a point
#   are within the seed-to-seed spread, so the tables give no verdict until two seeds a side
#   exist.
# - **Runs that get interrupted.** A full run is long enough to be cut off. Every epoch writes a
#   checkpoint (weights, optimizer, random state, log), a rerun continues from the newest one
#   and ends with the same numbers as an uninterrupted run, and a finished run is replayed from
#   its results file instead of being trained again.

# %% [markdown]
# ## Hand-in
#
# This notebook, executed top to bottom on the `full` profile (a preview says so in its banner
# at the top) and exported to PDF, is the report. `python make_submission.py --student-id ID
# --name NAME` exports it with a title page and packs `<ID>_lab3.zip`: the notebook, its PDF,
# `resnet18.py`, the modules the notebook imports and the results files it replays, so that a
# grader can re-run it with only CIFAR-10 added. The figures are also in `plots/<profile>/`.
