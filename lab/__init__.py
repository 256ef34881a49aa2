"""Many runs, built on `train_utils.py` (one run) and `engine` (parts that know nothing of runs);
nothing below imports this package (tests/test_imports.py).

    grid        the baseline, its named changes, the profiles, running or replaying a run
    stats       rows over seeds: mean, std, Welch intervals, verdicts (python -m lab.stats)
    tables      those rows as markdown tables, and the notebook's other tables
    lr_finder   the LR range test (python -m lab.lr_finder)
    notebook    the notebook's helpers: run or replay a group, overlay, compare
    cost        FLOPs per image, the runs' workload, the notebook's time projection (python -m lab.cost)
"""
