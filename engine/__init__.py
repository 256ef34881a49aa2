"""The lab's engine: parts that know nothing of runs, one concern a module. `train_utils.py`
(one run) is built on them; `engine` imports only `engine` (tests/test_imports.py).

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
    progress    progress bars that behave in a terminal, a notebook and a log file
    plotting    curves, overlays, images, the confusion matrix
"""
