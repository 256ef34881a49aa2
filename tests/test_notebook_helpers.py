"""lab/notebook.py, the notebook's glue, tested without a kernel: the sentences it writes
follow the verdicts, replay-only mode lists what is missing, stale settings are flagged, and
the model table measures both stems."""

from __future__ import annotations

from lab import grid, notebook, stats, tables
from resnet18 import resnet18
from tests.test_stats import fake_grid


def test_conclude_claims_only_what_the_verdicts_allow():
    text = tables.conclude(stats.summarize(fake_grid()))
    assert "much_better" in text and "better" in text
    # one seed: its difference is a value, never a finding
    line = next(x for x in text.splitlines() if "one_seed" in x)
    assert "n too small" in line


def test_replay_only_lists_missing_experiments(tmp_path, capsys):
    lab = notebook.Lab("smoke", data=None, results_dir=tmp_path, train_missing=False)
    assert lab.run(["baseline", "norm_minmax"]) == {}
    assert lab.not_run == ["baseline", "norm_minmax"]
    assert "not run" in capsys.readouterr().out
    rows, text = lab.compare({})
    assert rows == [] and "No runs" in text


def test_stale_settings_are_flagged_but_new_fields_are_not(tmp_path):
    from tests.test_reliability import fake_result, write_results

    cfg = grid.make_config("baseline", "smoke", 0)
    path, lines = grid.result_path(tmp_path, "smoke", "baseline", 0), []
    saved = fake_result("baseline")
    del saved["config"]["min_rise_steps"]  # a field added after the run was made
    write_results(tmp_path / "smoke", saved)
    assert grid.saved_result(path, "smoke", lines.append, cfg) == saved and lines == []
    saved["config"]["lr"] = 0.5
    write_results(tmp_path / "smoke", saved)
    assert grid.saved_result(path, "smoke", lines.append, cfg) == saved  # replayed, with a warning
    assert len(lines) == 1 and "baseline__seed0.json was saved with other settings" in lines[0]
    assert "(lr)" in lines[0]
    notebook.brief(lines[0])  # the groups' echo keeps warnings


def test_provenance_and_test_line():
    run = {
        "seed": 1,
        "status": "ok",
        "test_acc": 0.9,
        "test_loss": 0.3,
        "finished_at": "T",
        "env": {"device": "cuda", "gpu": "NVIDIA H200", "torch": "2.11", "note": "shared"},
    }
    (line,) = notebook.provenance_lines({"final": [run]})
    assert (
        line
        == "final seed 1: ok on cuda NVIDIA H200, bf16, torch 2.11, data: not recorded, finished T; shared"
    )
    assert notebook.test_line(run) == "Test loss: 0.3000 | Test acc: 0.9000  (seed 1)"
    failed = dict(run, test_acc=None, status="diverged", message="loss nan at epoch 1")
    assert notebook.test_line(failed) == "seed 1: diverged: loss nan at epoch 1"


def test_stem_table_measures_both_stems():
    cifar, imagenet = resnet18(stem="cifar", width=4), resnet18(stem="imagenet", width=4)
    table = tables.stem_table(cifar, imagenet)
    layer4 = next(x for x in table.splitlines() if x.startswith("| `layer4`"))
    assert "(32, 4, 4)" in layer4 and "(32, 1, 1)" in layer4  # 32x32 in: CIFAR ends 4x4


def test_run_log_prints_the_handouts_lines_and_collapses_long_runs():
    def log(epochs):
        lines = ["[baseline seed 0, profile full]", "Normalization none: mean [0.0] std [1.0]"]
        for e in range(1, epochs + 1):
            lines += [
                f"Epoch: {e}",
                "learning rate: 0.05",
                "Train loss: 1.0 | Train acc: 0.5",
                "Val loss: 1.1 | Val acc: 0.4",
            ]
        return lines + ["Test loss: 0.6 | Test acc: 0.8"]

    out = []
    echo = notebook.RunLog(keep=2, out=out.append)
    for line in log(5):  # a run being trained: every epoch, as it ends
        echo(line)
    assert len([ln for ln in out if ln.startswith("Epoch:")]) == 5
    out.clear()
    for line in ["[baseline seed 0: replaying results/full/baseline__seed0.json]", *log(20)]:
        echo(line)
    # a replayed run is folded for the report: one line an epoch, the first and last two
    epochs = [ln.split(" | ")[0] for ln in out if ln.startswith("Epoch:")]
    assert epochs == ["Epoch: 1", "Epoch: 2", "Epoch: 19", "Epoch: 20"]
    folded = next(ln for ln in out if ln.startswith("Epoch: 19"))
    assert folded == (
        "Epoch: 19 | learning rate: 0.05 | Train loss: 1.0 | Train acc: 0.5 | "
        "Val loss: 1.1 | Val acc: 0.4"
    )
    assert "... (20 epochs, 16 not shown, full log in results/full/baseline__seed0.json)" in out
    assert (
        out.index("Epoch: 2" + folded[9:])
        < out.index(folded)
        < out.index("Test loss: 0.6 | Test acc: 0.8")
    )
    assert out[-1].startswith("Test loss") and len(out) == 1 + 2 + 4 + 1 + 1
    out.clear()
    for line in [
        "[baseline seed 0: replaying results/full/baseline__seed0.json]",
        *log(3),
    ]:  # short runs: every epoch, nothing collapsed
        echo(line)
    assert [ln[:8] for ln in out if ln.startswith("Epoch:")] == ["Epoch: 1", "Epoch: 2", "Epoch: 3"]
    assert not [ln for ln in out if ln.startswith("...")]


def test_provenance_groups_runs_made_alike_and_names_no_missing_script():
    run = {
        "seed": 0,
        "status": "ok",
        "finished_at": "A",
        "env": {"device": "cpu", "cpu": "Xeon", "torch": "2.14", "note": "shared (scripts/x.sh)"},
    }
    runs = {"a": [run, dict(run, seed=1, finished_at="B")], "b": [dict(run, seed=2)]}
    (line,) = notebook.provenance_lines(runs)
    assert line.startswith("a seeds 0, 1, b seed 2: ok on cpu Xeon")
    assert line.endswith("finished A to B; shared")


def test_the_cpu_profile_is_a_study_of_its_own_not_a_preview():
    banner = notebook.preview_banner(notebook.Lab(profile="cpu", data=None, seeds=3))
    assert "PREVIEW" not in banner  # make_submission refuses notebooks that say PREVIEW
    assert "Profile `cpu`" in banner and "7,000 training images" in banner and "3 seeds" in banner
    assert "baseline of this scale" in banner


def test_unfinished_runs_are_read_from_the_logs_a_cut_job_left(tmp_path):
    def block(e, acc):
        return [
            f"Epoch: {e}",
            "learning rate: 0.05",
            f"Train loss: 1.0 | Train acc: {acc}",
            f"Val loss: 1.1 | Val acc: {acc}",
        ]

    (tmp_path / "lane.log").write_text(
        "\n".join(
            ["[done seed 0, profile full]", *block(1, 0.5), "Test loss: 0.6 | Test acc: 0.8"]
            + ["[done seed 0: replaying OUT/results/full/done__seed0.json]", *block(1, 0.5)]
            + ["[cut seed 0, profile full]", "Normalization none", *block(1, 0.3), *block(2, 0.4)]
            + ["[cut seed 1, profile full]", *block(1, 0.2)]
        )
    )
    runs = grid.unfinished_runs([tmp_path / "lane.log"])
    assert list(runs) == ["cut", "cut (seed 1)"]  # a finished run has its results file
    assert runs["cut"]["epoch"] == [1, 2] and runs["cut"]["val_acc"] == [0.3, 0.4]
    assert runs["cut"]["lr"] == [0.05, 0.05] and runs["cut"]["train_loss"] == [1.0, 1.0]


def test_ending_table_averages_the_finished_seeds_and_finds_the_lowest_val_loss():
    def run(val_loss, train_acc, status="ok"):
        return {
            "status": status,
            "history": {"val_loss": val_loss, "train_acc": train_acc, "lr": [0.1, 0.05]},
        }

    runs = {
        "a": [run([1.0, 2.0], [0.5, 0.9]), run([3.0, 1.0], [0.5, 0.7])],
        "b": [run([9.0, 9.0], [0.1, 0.1], status="diverged")],
    }
    text = tables.ending_table(runs)
    row = next(x for x in text.splitlines() if x.startswith("| a "))
    assert "| 2 | 0.05 | 0.8000 | 1.0000 (1, 2) | 1.5000 |" in row
    assert "| b " not in text  # no finished seed: no row


def test_quiet_summary_gives_a_diverged_seed_its_reason(capsys):
    done = [
        {"seed": 0, "status": "ok", "test_acc": 0.5, "test_loss": 1.0},
        {"seed": 1, "status": "diverged", "test_acc": None, "message": "diverged: loss 1e6"},
    ]
    notebook._quiet_summary("bs_big", done)
    out = capsys.readouterr().out.splitlines()
    assert "test acc 0.5000  (seeds 0)" in out[0]
    assert out[1].endswith("seed 1: diverged: loss 1e6")  # the status said once


def test_a_study_without_results_is_not_shown(tmp_path, capsys):
    lab = notebook.Lab("smoke", data=None, results_dir=tmp_path)
    assert notebook.study(lab, "cpu") is None
    assert "not shown: no results" in capsys.readouterr().out
    (tmp_path / "cpu").mkdir()
    (tmp_path / "cpu" / "baseline__seed0.json").write_text("{}")
    shown = notebook.study(lab, "cpu")
    assert shown.profile == "cpu" and not shown.train_missing and not shown.force
    assert notebook.study(lab, "smoke") is None  # the lab's own profile is no study
