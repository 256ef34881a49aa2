"""The lab's parts that know nothing of runs; `engine` imports only `engine`.

errors      one-line user errors, the CLI wrapper, progress bars only in a terminal
data        CIFAR-10 loading, the split, normalization
augment     augmentation presets on whole batches, and the torchvision reference
loader      batches cut and augmented on the device, a DDP rank's share
schedules   learning-rate strategies as pure functions of the step
distributed torchrun: one run over several processes (DDP), or whole runs per rank
plotting    curves, overlays, images, the confusion matrix
runtime     device, seeding, autocast, torch.compile, the machine record
checkpoint  atomic writes, per-epoch checkpoints, resume
"""
