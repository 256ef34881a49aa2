"""The lab's parts that know nothing of runs: data, augmentation, loaders, schedules, plots."""
