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
# This report trains the hand-written ResNet18 of `resnet18.py` on CIFAR-10 and compares a
# baseline with one change at a time: input normalization, data augmentation, the learning
# rate and its update strategy, the batch size. It ends with a final model that passes the
# lab's target test accuracy, its confusion matrix, and the difficulties I met.
#
# **Two scales.** Every comparison is made at two scales, each against the baseline of its own
# scale, never across:
#
# - **`full`**, the lab's scale: 45,000 training images, ResNet18 at width 64, the baseline's 20
#   epochs. These runs need a GPU; mine were made on one NVIDIA H200, one seed each (two for the
#   baseline), on a JPEG copy of CIFAR-10. The `lr` and `batch` groups could not be run at this
#   scale in the GPU time I had.
# - **`cpu`**, a study of the whole grid that two CPU cores train in hours: 7,000 training
#   images, width 16, half the epochs (the baseline's 10, its step at epoch 5), **three seeds
#   of every experiment**, on the lossless PNG copy. Its accuracies are far lower (its baseline
#   gets about half of the test images right), but three seeds measure the seed-to-seed spread,
#   so its tables can tell a real effect from noise.
#
# Every figure's title and every table's heading names its scale.

# %% [markdown]
# ## 1. Set-up
#
# The set-up cell loads CIFAR-10 and prints what this execution is: the profile, the data
# (named by its content), the device and precision, and the saved runs it reads. Before anything
# trains it prints the runs it would train here and the time a few measured steps project for
# them (`lab/cost.py`).

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
STUDY = "cpu"  # the three-seed study shown beside each group (None: none), replayed only

# %%
import dataclasses
import math
from pathlib import Path

import torch

from engine import augment, data, plotting, schedules
from engine.runtime import check_compile_mode, pick_device
from lab import lr_finder, notebook, stats
from lab.cost import projected_cost
from lab.notebook import Lab, brief, describe_setup, show_code
from lab.tables import epoch_table, n_params, stem_table
from resnet18 import BasicBlock, ResNet18, resnet18

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
study = notebook.study(lab, STUDY)  # None when STUDY is this profile: then `lab` is the study
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
# momentum 0.9 and weight decay 5e-4, batch 128, and a step-decay learning rate, 0.05 halved
# every 10 epochs, so 0.05 for epochs 1 to 10 and 0.025 for epochs 11 to 20 (the `cpu` scale
# halves every length: 0.05 for epochs 1 to 5, 0.025 for 6 to 10). Every setting is printed
# below. The validation set (5,000 images at full scale) is held out of the 50,000 training
# images and scored after every epoch; the test set is scored once, at the end.
#
# **How a step is implemented** (`train()` in `train_utils.py`, the step itself in
# `engine/runtime.py`): for every batch the learning rate the schedule gives for that step is
# set, then the forward pass, the cross-entropy loss, the backward pass and the optimizer's
# update. After each epoch the network is switched to evaluation mode (BatchNorm's running
# statistics, no gradients) to score the validation split, and a checkpoint is written, so an
# interrupted run continues where it stopped. Each run's log is printed in the handout's words,
# one line an epoch, its first and last two epochs; the table after it picks the epochs the
# discussion is about.

# %%
print(notebook.settings_lines(BASE))

# %%
baseline = lab.run(["baseline"], echo=brief)

# %%
lab.show(baseline, "baseline")
step = round(BASE.step_epochs)
for r in baseline.get("baseline", []):
    print(f"seed {r['seed']}, {PROFILE} scale:")
    notebook.show_markdown(epoch_table(r, [1, step // 2, step, step + 1, step + 3, BASE.epochs]))

# %%
HANDOUT_BASELINE = 0.866  # the test accuracy the handout reports for this run
print(f"the handout's baseline: Test acc: {HANDOUT_BASELINE:.4f}")

# %% [markdown]
# At the `cpu` scale, three seeds of the same run (mean and ±1 std band):

# %%
if study:
    base_cpu = study.run(["baseline"], echo=None)
    fig = study.overlay(base_cpu, "Baseline", "baseline_overlay.png")
    cpu_step = round(grid.make_config("baseline", study.profile).step_epochs)
    for r in base_cpu.get("baseline", []):
        print(f"seed {r['seed']}, {study.profile} scale: {notebook.test_line(r)}")
        notebook.show_markdown(epoch_table(r, [1, cpu_step, cpu_step + 1, 2 * cpu_step]))
    m, sd, n = stats.mean_std(r["test_acc"] for r in base_cpu.get("baseline", []))
    if n:
        print(f"test accuracy, mean ± std over {n} seeds: {100 * m:.2f} ± {100 * sd:.2f}%")

# %% [markdown]
# **Discussion.** At full scale the log shows the two phases of the step schedule. While
# the learning rate is 0.05 the training loss falls steadily, but the validation loss is at its
# lowest of that phase around epoch 5 (0.7365 for seed 0) and is higher at epoch 10 (0.8989),
# while the validation accuracy hardly moves (0.7516 at epoch 5, 0.7478 at epoch 10): the
# network already fits its training images better than it generalizes, and the large steps
# keep it bouncing. At the halving (epoch 11, lr 0.025) both curves jump: the training loss
# drops from 0.1796 to 0.0494 and the validation accuracy from 0.7478 to 0.8154. By epoch 13
# the training accuracy is 1.0000 and stays there: every training image is memorized, and the
# last seven epochs move the validation accuracy by a few tenths of a point (0.8236 at epoch
# 13, 0.8268 at epoch 20). This is overfitting in its plainest form, with nothing but weight decay against it.
#
# The two seeds end at 0.8259 and 0.8236 test accuracy, below the handout's 0.8660. They were
# trained on a JPEG copy of CIFAR-10 (quality 75, colour subsampled), which loses detail that a
# 32x32 image has little of; the same run on the lossless images has not been made at full
# scale, so I cannot yet say how much of the 4-point gap the copy explains (section 6).
#
# The `cpu` baseline tells the same story in miniature. By epoch 10 the training accuracies of
# the three seeds are 0.9669, 0.9577 and 0.9544, while the validation accuracy is about one
# half. The halving at epoch 6 lifts the validation accuracy in two seeds (0.4650 to
# 0.5300, 0.4490 to 0.5020) but not in the third (0.5040 to 0.4920): with 1,000 validation
# images one epoch's figure moves by a point or two by chance. The three seeds end at 48.25 ±
# 1.84% test accuracy, the spread every `cpu` comparison below is measured against.

# %% [markdown]
# ## 4. One change at a time
#
# Each group below says what changes and what to look for, then shows each scale in turn: the
# runs' curves over the baseline's (several seeds drawn as their mean with a ±1 std band) and
# a table. The table gives, as mean ± std over the seeds its "runs" column counts, the
# validation accuracy at the last epoch (the model the test set scores) and at the best epoch,
# the test accuracy and the test loss (the time an epoch takes is the batch section's). The last two columns compare each run
# with the baseline of its scale: the difference in test accuracy with its 95% confidence
# interval (Welch's t interval), and a verdict: *better* or *worse* when the whole interval
# lies on one side of zero, *within noise* when it contains zero, *n too small* with one seed
# on a side, whose spread is then unknown. The full-scale runs have one seed each, so only
# the `cpu` study can give verdicts.
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
norm, norm_rows = lab.section(grid.GROUPS["norm"], "Input normalization", "norm_overlay.png", brief)
print("\nStatistics each run normalized with (saved in its results):")
for name, rs in {"baseline": lab.runs.get("baseline", []), **norm}.items():
    for r in rs[:1]:
        s = r["norm_stats"]
        print(f"  {name:<18} {s['mode']:<17} mean {s['mean']}  std {s['std']}")

# %%
if study:
    norm_cpu, norm_cpu_rows = study.section(
        grid.GROUPS["norm"], "Input normalization", "norm_overlay.png"
    )

# %% [markdown]
# **Discussion.** At full scale the three normalizations end within a few tenths of a point
# of each other and of the baseline (test accuracy 82.31%, 82.50% and 82.45% against the
# baseline's 82.47 ± 0.16%), one seed each, so no verdict is possible there. The `cpu` study has
# three seeds of each, and its verdicts are all *within noise*: the differences (+0.75, +0.87 and
# +2.67 points) are smaller than the seed-to-seed spread: the seeds of min-max scaling end at
# 0.4378, 0.5142 and 0.5179, those of exact standardization at 0.4421, 0.5053 and 0.5261, so
# their intervals reach about ±10 points. The best-epoch validation accuracies (52.83%, 54.03% and 55.27% against the
# baseline's 51.53%) point the same way as the test accuracies, but with spreads of 1 to 2
# points they do not prove it either.
#
# This is what the principle predicts for this network: the first convolution is followed by
# BatchNorm, which re-centres and re-scales its output whatever the input's scale, so input
# normalization can only change the first updates of the first layer. The statistics
# themselves show why the sampled and exact variants cannot differ: `get_mean_std` on 30% of
# the images differs from the exact mean and std by at most 1.7e-03, far below anything a
# network would notice. I keep standardization with the exact statistics for the final model
# because it is the usual input of the recipes I build on, not because this group proved it
# better.
#
# **How it is implemented** (`engine/data.py`): `normalization_stats` computes each mode's
# per-channel centre and scale on the training split only (min-max: the midpoint and half the
# range, so that the images land in [-1, 1]; standardization: the mean and standard deviation),
# `get_mean_std` draws the 30% sample with a seeded generator, and the loader applies
# `(x - mean) / std` to every batch on the fly.

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
aug, aug_rows = lab.section(grid.GROUPS["aug"], "Data augmentation", "aug_overlay.png", brief)
for name, rs in {"baseline": lab.runs.get("baseline", []), **aug}.items():
    for r in rs[:1]:
        h = r["history"]
        best = max(range(len(h["val_acc"])), key=h["val_acc"].__getitem__)
        print(
            f"  {name:<14} seed {r['seed']}: val acc {h['val_acc'][-1]:.4f} at the last epoch, "
            f"best {h['val_acc'][best]:.4f} at epoch {best + 1}; lowest lr {min(h['lr']):g}; "
            f"test loss {r['test_loss']:.4f}"
        )

# %%
if study:
    aug_cpu, aug_cpu_rows = study.section(
        grid.GROUPS["aug"], "Data augmentation", "aug_overlay.png", ending=True
    )

# %% [markdown]
# **Discussion.** At full scale this group surprised me at first. Augmentation is supposed to
# reduce overfitting, yet by the lab's measure, test accuracy at the last epoch, only colour
# jitter (83.72%) ends above the baseline's 82.47%, while crop and flip alone ends at 80.60%.
# The other evidence the runs saved says the augmentations did help, and that the last epoch is
# the wrong moment to read them:
#
# - **Test loss.** Every augmented run ends with a lower test loss than the baseline's 0.6199:
#   0.4909 for jitter, 0.5330 for rotation, 0.5686 for cutout, 0.5898 for noise, 0.6106 for
#   crop and flip. The network is less confidently wrong on images it has not seen, which is
#   what a regularizer should do, even where the top-1 accuracy does not show it.
# - **Best epoch.** Crop and flip reaches 0.8508 validation accuracy at epoch 19, above any
#   epoch of either baseline seed (at most 0.8318), then falls to 0.8212 one epoch later. The
#   others peak at epoch 18 or 19 too, between 0.8318 and 0.8450, and end one to three points
#   lower, between 0.8118 and 0.8342.
# - **The learning rate never falls below 0.025.** The step schedule halves once and stays at
#   half its starting rate, so the weights keep moving by large steps to the end. The baseline
#   has memorized its training set by epoch 13 (train accuracy 1.0000), its loss is almost zero
#   and it barely moves; an augmented run never sees the same image twice, its loss stays
#   high and each large step moves its validation accuracy by points from one epoch to the
#   next. The test set scores whichever epoch happens to be last.
#
# So a run with the learning rate annealed to zero would settle on its good epochs instead of
# sampling one of them: I expect its last-epoch accuracy to come near the best-epoch figures
# above (0.8508 for crop and flip) with the drops gone. No run of the grid isolates this
# at full scale; the final recipe (section 5) anneals to almost zero over 50 epochs with crop,
# flip and cutout, and ends with the best test accuracy of the lab, but it changes more than
# the schedule. The training
# accuracy of these runs is measured on the augmented batches they train on, which are harder
# than the clean images, so their train/validation gap (0.8988 against 0.8212 at the last epoch
# of crop and flip) is not the baseline's kind of gap, and I do not read it as a measure of
# overfitting.
#
# The `cpu` study, three seeds each, turns part of this into verdicts. Two augmentations are
# *better* than the baseline: colour jitter by +9.33 points [+4.44, +14.22] and Gaussian noise
# by +6.49 [+1.34, +11.64]. Crop and flip (+4.15) and rotation (+2.52) are *within noise*, and
# so is cutout (`strong`, -4.09), with the widest spread of the study (±6.44). Colour jitter is
# the best augmentation at both scales. The table of how the runs ended shows the full-scale
# signature more plainly: every augmented run ends with a lower validation loss than the
# baseline (from 1.1229 to 1.5653, against 2.0243), and most reach their lowest in one of the
# last epochs, still improving when training stops, where the baseline's lowest came at epoch
# 5 or 6. Their training accuracy ends between 0.4593 and 0.5866, against the baseline's
# 0.9597: in ten epochs of 7,000 images the network is far from fitting the augmented images,
# so what augmentation can give is limited by the training length. Cutout hides a 16x16
# square, a quarter of the image, and makes the hardest task (training accuracy 0.4593); it is
# the augmentation that most needs a longer run, which the final recipe gives it.
#
# **How it is implemented** (`engine/augment.py`, `augment_batch`): the random choices (crop
# offsets, flips, angles, jitter factors, cutout corners) are drawn for the whole batch at
# once from the run's seeded generator, so a resumed run draws the same ones. The crop and
# flip are one gather on the uint8 batch; rotation, jitter and noise run on the float batch;
# cutout comes after normalization, so its square is 0: black for runs without normalization
# (all the `aug` runs here), the mean colour for normalized ones. Validation and test images
# are never augmented.

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
# peak (both factors are printed below).

# %%
lr_range = lr_finder.lr_range(lab, BASE)
if lr_range is not None:
    fig = lr_finder.plot_lr_range(lr_range, PLOTS / "lr_range.png")

# %%
lr, lr_rows = lab.section(grid.GROUPS["lr"], "Learning rate and schedule", "lr_overlay.png", brief)

# %% [markdown]
# My full-scale job was cut off by its time limit while four of these runs were part-way; they
# left no results file, only their logs (`results/full/gpu_run/`). Their first epochs are drawn
# below for what they are: **unfinished** runs, one seed each, against the baseline's same
# epochs.

# %%
unfinished = grid.unfinished_runs(Path(RESULTS_DIR, PROFILE, "gpu_run").glob("*.log"))
partial = {n: h for n, h in unfinished.items() if n in grid.GROUPS["lr"] and n not in lr}
if partial and baseline.get("baseline"):
    n = max(len(h["epoch"]) for h in partial.values())
    base = [{k: v[:n] for k, v in r["history"].items()} for r in baseline["baseline"]]
    for name, h in partial.items():
        e = h["epoch"][-1]
        base_e = ", ".join(f"{r['history']['val_acc'][e - 1]:.4f}" for r in baseline["baseline"])
        print(
            f"{name:<12} unfinished: {e} of {grid.make_config(name, PROFILE).epochs} epochs; "
            f"val acc at epoch {e}: {h['val_acc'][-1]:.4f} (the baseline's seeds: {base_e})"
        )
    fig = plotting.plot_overlay(
        {"baseline": base, **partial},
        title=f"Learning rate: unfinished runs, their first epochs ({PROFILE})",
        path=PLOTS / "lr_unfinished.png",
    )

# %%
if study:
    lr_cpu, lr_cpu_rows = study.section(
        grid.GROUPS["lr"], "Learning rate and schedule", "lr_overlay.png", ending=True
    )

# %% [markdown]
# **Discussion.** At the `cpu` scale, three seeds each, this group gives the clearest verdicts
# of the lab, and they sort by one thing: the learning rate at the end of training. The three
# schedules that end on a small rate are *better* than the baseline: one-cycle by +9.70 points
# [+5.71, +13.68], the cyclical rate by +8.47 and cosine annealing by +5.58. The constant
# rate, which never lowers it, is *within noise* of the baseline (-0.58), whose one halving
# still leaves 0.025 for the last epochs. The table of how the runs ended shows the mechanism.
# The baseline memorizes its 7,000 images (training accuracy 0.9597) while its validation
# loss climbs from 1.4719, its lowest, around the halving, to 2.0243: the last epochs, still
# at a large rate, carry the weights away from where they generalized best. Cosine and
# one-cycle fit the training set just as completely (0.9933 and 0.9937), but their rate falls
# to almost nothing (4.08e-07 and 1.85e-06 in the last epoch), so their validation loss stays
# near its lowest (one-cycle: 1.3518 at the end, 1.3215 at its lowest): small final steps
# settle into a minimum instead of bouncing across it. One-cycle also warms up to twice the
# baseline's rate (peak 0.1), and its three seeds agree to ±0.70 points, the tightest spread
# of the study.
#
# The cyclical rate gets there another way. It never memorizes (training accuracy 0.7442):
# every 2.5 epochs its rate climbs back to 0.1 and knocks the weights out of the minimum they
# were settling into, and its validation curves in the figure dip at every peak. Each cycle
# ends at the lower bound, and so does the last epoch, so the test set scores a settled model;
# it has the lowest test loss of the group (1.2845). The same run stopped at a peak would read
# the other way round, which is why a cyclical schedule should be stopped at the end of a
# cycle.
#
# The base rate alone matters less than the schedule. 0.01 is *worse* (-4.49 points [-8.61,
# -0.37]): it learns too slowly to fit the training set in ten epochs (training accuracy
# 0.7629). 0.2 is *within noise* (+1.67), and its lower test loss (1.6115 against the
# baseline's 2.1326) is not the sign of a better model: it does not fit the training set
# either (0.7344), because steps that large cannot descend into the narrow parts of the loss
# surface, and a network that has memorized less is less confidently wrong. The LR range test, made at full scale, suggests a peak
# of 0.0144, a third of the rate with the lowest loss (0.0433); judged by these runs that rule
# is too cautious for a 10- or 20-epoch run, and I read the range test as saying where the
# loss starts to blow up from fresh weights (above about 0.05) rather than as the rate to
# train with.
#
# At full scale the job that ran this group was cut off before any of its runs finished (the
# unfinished runs above). Where their first epochs can be compared, they point the same way:
# at epoch 11, just after the baseline's halving, lr 0.01 is at 0.7798 and lr 0.2 at 0.7506
# validation accuracy against the baseline's 0.8154 and 0.8150, while cosine, whose rate has by
# then fallen to about half, is level at 0.8130; the end of training, where the schedules
# differ most, is exactly what these runs did not reach. They also measured something I had
# not planned: `lr_constant` is the baseline's configuration and seed for its first ten
# epochs, yet at epoch 9 it reads 0.7392 where the baseline's seed 0 reads 0.7694. The GPU did
# not repeat the same run bit for bit, and one epoch's figure moved by three points: another
# reason why one seed per run can carry no verdict. On the CPU the two runs are identical up
# to the halving, and the figure of the `cpu` study draws them as one curve for those epochs.
#
# **How it is implemented** (`engine/schedules.py`): every strategy is a pure function of the
# optimizer step, `lr_at(step)`, evaluated before each step and written into the optimizer's
# parameter groups; the figure above calls the same function. Epoch-denominated lengths (the
# step every 10 epochs, the cycle of the cyclical rate) are converted to steps with the run's
# own steps per epoch, so a schedule keeps its shape at any batch size or scale.

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
# under-used. After the comparison, a last table gives the speed of each batch size at the
# `cpu` scale, on the two CPU cores the study ran on: the steps per epoch, the seconds per
# epoch (the first epoch left out: it includes start-up costs) and the images per second.

# %%
batch, batch_rows = lab.section(grid.GROUPS["batch"], "Batch size", "batch_overlay.png", brief)

# %%
if study:
    batch_cpu, batch_cpu_rows = study.section(
        grid.GROUPS["batch"], "Batch size", "batch_overlay.png", ending=True
    )
    both = {"baseline": study.runs.get("baseline", []), **batch_cpu}
    speed = stats.batch_table(both)
    skip = ["last_val_acc", "test_acc"]  # in the table above; GPU memory only where measured
    skip += ["peak_mem_mb"] if all(r["peak_mem_mb"] is None for r in speed) else []
    notebook.show_markdown(
        f"**Scale `{study.profile}`**, the speed of each batch size:\n\n"
        + stats.format_table(speed, skip=skip)
    )

# %% [markdown]
# **Discussion.** No batch run was made at full scale; the `cpu` study, three seeds each,
# shows the batch size acting through two things: how many steps an epoch makes, and how noisy
# each step is.
#
# - **Fewer steps.** At the baseline's rate a larger batch falls behind because it makes fewer
#   updates: batch 512 (14 steps an epoch) is *worse* by 5.04 points, and batch 2048 (4 steps
#   an epoch, 40 in the whole run) by 20.20 points; its training accuracy reaches only 0.4236,
#   so it has had too few updates to fit anything, let alone to overfit.
# - **Noisier steps.** Batch 32 at the same rate is *better*, by +6.80 points [+2.66,
#   +10.93]. It makes four times as many steps, each from a quarter of the images, so each is
#   noisier; it fits the training set less (training accuracy 0.8264 against the baseline's
#   0.9597) and reaches the lowest validation loss of the group (1.2174). The gradient noise
#   regularizes.
# - **The linear scaling rule** (Goyal et al. 2017) keeps the ratio of learning rate to batch
#   size fixed. `bs_32_scaled` (rate 0.0125) is *within noise* of the baseline (+1.10), and it
#   ended the way the baseline did: training accuracy 0.9339, and a validation loss that climbs
#   from its lowest, 1.3544, to 1.9947. This is the rule's own prediction, the same ratio giving
#   the same noise and the same progress per epoch, and it tells me where the gain of batch 32
#   comes from: the noise of its steps, not their number, since the scaled run makes just as
#   many.
# - **Where the rule breaks.** At batch 512 the scaled rate (0.2) does not recover the loss: it
#   is *worse* by 4.72 points, like the unscaled run. It fits more (training accuracy 0.8490
#   against 0.7471), but 140 steps in all leave no time to anneal, and without a warm-up its
#   first epochs jump about (the validation loss in the figure). At batch 2048 the scaled rate
#   0.8, warmed up over one epoch, which at this scale is only 4 steps, diverged in all three
#   seeds in the second epoch (each run stopped itself when the validation loss passed its
#   limit, as printed above). Goyal et al. warm up over 5 epochs of ImageNet, thousands of
#   steps, at a batch that is a tiny fraction of their training set; here a batch of 2048 is
#   more than a quarter of the 7,000 training images and 0.8 is sixteen times the baseline's
#   rate. The rule is an approximation for many small steps, and this run is the opposite.
#
# **Speed.** On the two CPU cores the batch size changes the speed little: 403 images a second
# at batch 128 and 433 at 512, whose spreads overlap, 358 at batch 32 and 341 at batch 2048. The
# smallest batch pays the cost of a step four times as often for each image, and the largest
# is slower too; I did not profile why. On this hardware a larger batch therefore buys no time
# worth its loss in accuracy. I have no full-scale batch runs, so I cannot say how a GPU would
# rank them.
#
# **How it is implemented**: each batch experiment is the baseline with another `batch_size`
# and, for the `_scaled` runs, the learning rate multiplied by batch / 128 (`lab/grid.py`);
# the warm-up of the largest batch is the first part of its schedule (`engine/schedules.py`).
# Seconds per epoch are the training loop's own clock per epoch, the first epoch left out
# (it includes one-time start-up costs), and images per second is the training split's size
# divided by them.

# %% [markdown]
# ## 5. Final model
#
# **The recipe** (experiment `final`, `lab/grid.py`). I did not search for it on the test set:
# I wrote it down before the grid's groups had run, from what the principles of section 4 and
# the papers behind them say about this network, and ran it once at full scale. Against the
# baseline it standardizes the inputs, augments with crop, flip and one 16x16 cutout square,
# trains with Nesterov SGD at batch 512 under a one-cycle learning rate (a rise to 0.4 over the
# first 20% of the steps, then an anneal to almost zero), for 50 epochs instead of 20, with
# label smoothing 0.1, and scores the test set on each image and its mirror image. The list
# below names the paper behind each setting.

# %%
notebook.show_markdown(notebook.sources_list(grid.FINAL_WHY))
final = lab.run(["final"], echo=brief)

# %%
lab.show(final, "final")

# %% [markdown]
# **A second candidate, not yet run at full scale** (experiment `final_airbench`): the ResNet-18
# baseline of Keller Jordan's airbench work (Jordan 2024, its time-to-94% ResNet-18 script), tuned for
# exactly this network, the CIFAR ResNet-18 of section 2. It is shorter (26 epochs at batch
# 500), uses a triangular schedule (0.04 up to 0.2 at 20% of the steps, then linearly to 0),
# a random translation by up to 4 pixels with reflected borders, a flip and one 12x12 cutout
# square, no label smoothing, and averages the logits over the image, its mirror and both
# shifted by one pixel at test time. The anchor's own figures, printed below, come from the
# script's header: a mean over 200 runs with mirror-only test-time augmentation, and three
# sample runs at each level; all were trained on the 50,000 training images, where this lab
# trains on 45,000. On a subset the recipe keeps about the anchor's 90 steps an epoch with a
# smaller batch and a learning rate scaled with it; the line below gives its size at each
# scale.

# %%
print("anchor, airbench's ResNet-18 baseline (Jordan 2024), 50,000 training images:")
print("  mirror test-time augmentation (tta_level 1): 94.00% test accuracy, mean of 200 runs")
print("  three sample runs: 93.36-93.53% without it, 93.84-93.93% mirror, 93.95-94.06% mirror")
print("  + translate (tta_level 2, this recipe's)")
notebook.show_markdown(notebook.sources_list(grid.AIRBENCH_WHY))
for profile in dict.fromkeys([PROFILE, STUDY or PROFILE]):
    cfg = grid.make_config("final_airbench", profile)
    steps = math.ceil(stats.train_size(dataclasses.asdict(cfg)) / cfg.batch_size)
    print(
        f"scale {profile}: batch {cfg.batch_size}, {cfg.epochs} epochs of {steps} steps, peak lr "
        f"{cfg.make_schedule(steps).max_lr:.3g}"
    )
airbench = lab.run(["final_airbench"], echo=brief)

# %% [markdown]
# Both recipes at the `cpu` scale, three seeds each, against the `cpu` baseline:

# %%
if study:
    final_cpu, final_cpu_rows = study.section(
        grid.GROUPS["final"], "Final recipes", "final_overlay.png", ending=True
    )

# %% [markdown]
# **Discussion.** At full scale the final recipe reaches the lab's goal: 91.44% test accuracy
# (test loss 0.3180), nine points above the baseline's 82.47 ± 0.16%, one seed, on the JPEG
# copy. Its log shows what section 4 led me to expect of an annealed run: the validation
# accuracy of the last epoch, 0.9128, is its best, with no drop at the end, because the rate
# has fallen to almost nothing (1.67965e-06 in epoch 50). Its training accuracy, 0.9232, is
# barely above the validation accuracy: it is measured on augmented batches with a cutout
# square, and label smoothing keeps the training loss near 0.6790 however well the network
# fits, since a smoothed target cannot be matched exactly. Unlike the baseline, which reached a
# training accuracy of 1.0000 by epoch 13, this network never memorizes its training set, and
# 50 epochs give the regularizers the time that 20 did not give the augmentations of
# section 4.2.
#
# What I cannot say is which setting earned the nine points. The recipe changes eight settings
# at once and trains 2.5 times longer, with one seed, so the gain belongs to the recipe, not to
# any one group of section 4. The `cpu` study measures the recipe with three seeds: it is
# *better* than that scale's baseline by +17.37 points [+13.49, +21.26], and the airbench
# candidate by +16.95 [+13.04, +20.86]. The two recipes end level (65.62 ± 0.82% and 65.20 ±
# 0.78% test accuracy), a difference smaller than either's spread, so at this scale neither is
# the better choice. Nor is the recipe the sum of the best single changes: the study found
# one-cycle and colour jitter the largest single gains, while the final recipe's batch of 512
# was *worse* than the baseline at a fixed rate and its cutout *within noise* in ten epochs; I
# wrote the recipe before these results existed and did not tune it on them. The airbench
# candidate remains to be run at full scale, where its anchor reports 94.00%.

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
# The errors fall where a person would make them too. The two hardest classes are cat (80.7%)
# and dog (84.1%), each most often mistaken for the other: at 32x32 pixels they share pose,
# texture and background. The next are bird (89.7%) and deer (91.9%), again mistaken for each
# other. The vehicles are the easiest (automobile 96.9%, the best), and their mistakes stay
# among vehicles: automobile for truck, ship for airplane.

# %% [markdown]
# ### Every run
#
# Every experiment against the baseline of its scale, the final recipes included: first the
# `full` scale, then the `cpu` study.

# %%
all_rows, text = lab.compare(lab.runs)
notebook.show_markdown(text)
if lab.not_run:
    print(f"not run at scale {PROFILE}: {', '.join(lab.not_run)}")

# %%
if study:
    study_rows, text = study.compare(study.runs)
    notebook.show_markdown(text)
    if study.not_run:
        print(f"not run at scale {study.profile}: {', '.join(study.not_run)}")

# %%
TARGET = 0.90  # the lab's goal: more than 90% test accuracy
finished = [r for r in all_rows if r["test_acc"]["mean"] is not None]
if finished:
    best = max(finished, key=lambda r: r["test_acc"]["mean"])
    verdict = "reaches" if best["test_acc"]["mean"] > TARGET else "does not reach"
    text = (
        f"At scale `{PROFILE}` the best run, **{best['name']}**, {verdict} the lab's "
        f"target of {TARGET:.0%}: {100 * best['test_acc']['mean']:.2f}% test accuracy "
        f"(mean of {best['test_acc']['n']})."
    )
    if PROFILE != "full":
        text += " The target applies to the `full` scale."
    notebook.show_markdown(text)
saved = sorted(Path(RESULTS_DIR, PROFILE).glob("*.json"))
print(f"results of profile {PROFILE}: {len(saved)} files in {Path(RESULTS_DIR, PROFILE)}/")
print(f"figures saved in {PLOTS}/: {', '.join(sorted(p.name for p in PLOTS.glob('*.png')))}")

# %% [markdown]
# ## 6. Difficulties met, and how I solved them
#
# - **Half of the grid needed a GPU I did not have.** One full-scale run is 20 epochs of
#   45,000 images. The benchmark of `results/bench/bench_cpu_xeon.json` measured 58 images a
#   second for the width-64 network on the two CPU cores I work on, so one run would take more
#   than four hours and one seed of the whole grid more than four days. The GPU time I had covered the baseline (two seeds), the `norm`
#   and `aug` groups and the final recipe, one seed each, and neither the `lr` nor the `batch`
#   group. One seed per run was a second problem: two seeds of the baseline differ by a few
#   tenths of a point, as much as most changes, so no single run could prove anything. I
#   solved both with the `cpu` study: the whole grid, three seeds of every experiment, at a
#   scale I chose by measuring the training speed rather than guessing (7,000 images, width 16,
#   half the epochs, the channels-last memory layout that trains fastest in float32 on this
#   CPU). I kept what each group's lesson needs: the step schedule still halves halfway,
#   batch 32 still makes about sixteen times as many steps an epoch as batch 512, the baseline
#   still memorizes its training set. What it cannot show is the lab's accuracy level: its
#   baseline gets about half of the test images right, and its figures are compared only with
#   its own baseline.
# - **Augmentation that did not seem to help.** At full scale four of five augmentations ended
#   below the baseline at the last epoch, against what the principle predicts. Before
#   concluding anything I looked at what else the runs saved (section 4.2): every augmented run
#   has a lower test loss than the baseline, and crop and flip is the best run of the group
#   one epoch before the end. The cause is the baseline's schedule, which never lowers the
#   learning rate below half its starting value, so the last epoch of an augmented run is a
#   noisy sample. The final recipe trains two and a half times longer and anneals the rate to
#   almost zero, and its validation accuracy does not drop at the end.
# - **Runs longer than a sitting.** The `cpu` study is hours of training, and my full-scale GPU
#   job was cut off by its time limit with four runs part-way. I made every run write a
#   checkpoint after each epoch and its results file only when it finishes, and made the grid
#   skip experiments whose results exist, so the study ran in pieces: each interrupted piece
#   continued with `--resume` from its last epoch, and on the CPU the continued run is the
#   uninterrupted one, bit for bit. The cut GPU job left no results, only logs; rather than
#   throw them away, I read their epochs back and show them as what they are, unfinished runs
#   (section 4.3).
# - **A baseline below the handout's.** My full-scale baseline ends about four points of test
#   accuracy below the handout's (section 3). Before touching the model I checked the data: the
#   offline copy I had used was JPEG (quality 75, colour stored at half resolution), which loses
#   detail a 32x32 image has little of; its channel statistics were close to the official ones,
#   so nothing looked wrong until I compared the pixels. Every later run (the whole `cpu`
#   study) uses a lossless copy in the official order, and every result names the copy it was
#   trained on. A second difference is mine by design: I hold out 5,000 of the 50,000 training
#   images for validation, so my network trains on a tenth fewer images than one trained on
#   all of them. How much of the gap each explains needs the full-scale baseline on the lossless copy,
#   which I have not been able to run, so I report the gap as open rather than explained.
