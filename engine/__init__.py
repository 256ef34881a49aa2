"""The lab's engine: the rooms behind `train_utils.py`, one concern a module.

Below train_utils (imported by it):
    errors      one-line user errors and the CLI wrapper
    copies      CIFAR-10's copies (image folders, tarballs, torchvision): found, decoded, cached
    data        CIFAR-10 loading, the split, normalization
    augment     augmentation presets, applied to whole batches
    loader      batches cut and augmented on the device
    schedules   learning-rate strategies as pure functions of the step
    settings    a run's settings checked against their types and bounds
    runtime     device, seeding, autocast, torch.compile, the machine record
    distributed torchrun's ranks: one run over several GPUs (DDP), or the grid's runs dealt out
    checkpoint  atomic writes, per-epoch checkpoints, resume
    results     the results files' schema, and the one reader of a profile's saved runs
    epoch       one epoch's training steps, the divergence checks and their messages
    progress    progress bars that behave in a terminal, a notebook and a log file
    plotting    curves, overlays, images, the confusion matrix

On top of train_utils (they train or read what it writes):
    grid        the baseline, its named changes, the profiles, the results files
    lr_finder   the LR range test (python -m engine.lr_finder)
    stats       rows over seeds: mean, std, Welch intervals, verdicts (python -m engine.stats)
    tables      those rows as markdown or csv
    notebook    the notebook's helpers: run or replay a group, overlay, compare
"""
