"""The report (report/build_report.py) and the notebook export (report/export_notebook.py).

The report is built from real smoke runs made in a temporary folder (skipped where the CIFAR-10
copy is absent) and from hand-made results (always); the PDF step runs where weasyprint or
Chromium is installed, and its text is read back with pdftotext where poppler is installed.
"""

from __future__ import annotations

import dataclasses
import json
import shutil
import subprocess
import sys

import pytest

from engine.checkpoint import save_json
from engine.errors import LabError
from engine.grid import make_config, run_experiment
from report import build_report, export_notebook, render, tables
from resnet18 import resnet18

REPO = build_report.REPO
HEADINGS = ("Setup and baseline", "Input normalization", "Data augmentation",
            "Learning rate and update strategies", "Batch size", "Final model",
            "How ResNet18 is built", "Difficulties and how they were solved", "Conclusion")  # fmt: skip
ENGINES = render.available_engines()
needs_engine = pytest.mark.skipif(
    not ENGINES, reason="no PDF engine (pip install weasyprint, or apt-get install chromium)"
)
needs_pdftotext = pytest.mark.skipif(
    shutil.which("pdftotext") is None, reason="pdftotext missing (apt-get install poppler-utils)"
)


def pdf_text(path) -> str:
    out = subprocess.run(["pdftotext", str(path), "-"], capture_output=True, text=True, check=True)
    return " ".join(out.stdout.split())  # pdftotext breaks lines where the page did


MACHINE_PATHS = ("/tmp/", "/root/", "/work/", "/home/")


def assert_no_machine_path(text: str) -> None:
    found = [p for p in MACHINE_PATHS if p in text]
    assert not found, [text[max(0, text.index(p) - 80) : text.index(p) + 80] for p in found]


def has_cjk_font() -> bool:
    if shutil.which("fc-list") is None:
        return False
    out = subprocess.run(["fc-list", ":lang=zh-tw"], capture_output=True, text=True).stdout
    return bool(out.strip())


# ---------------------------------------------------------------- real smoke runs


# Two baseline seeds give the noise floor every comparison needs; one run per section else.
SMOKE_RUNS = {"baseline": 2, "norm_std_sampled": 1, "aug_crop_flip": 1, "lr_cosine": 1, "bs_512": 1}


@pytest.fixture(scope="module")
def smoke_results(cifar, tmp_path_factory):
    """A few real smoke runs (two seeds where a spread is needed) and an LR range test."""
    from engine.lr_finder import lr_range_test

    out = tmp_path_factory.mktemp("results")
    for name, seeds in SMOKE_RUNS.items():
        for seed in range(seeds):
            run_experiment(name, "smoke", cifar, seed=seed, out=out, ckpt_root=out / "ck",
                           progress=False, echo=lambda *_: None)  # fmt: skip
    rr = lr_range_test(make_config("baseline", "smoke"), cifar, "cpu", steps=12)
    save_json({**rr, "name": "baseline", "profile": "smoke"}, out / "smoke" / "lr_range.json")
    return out


@pytest.mark.slow
def test_report_from_smoke_runs(smoke_results, cifar, tmp_path):
    engine = "auto" if ENGINES else "html"
    res = build_report.build(results_dir=smoke_results, out=tmp_path / "r.pdf", engine=engine,
                             build_dir=tmp_path / "build", data=cifar, student_id="312551001",
                             author="Wang Xiao-Ming")  # fmt: skip
    assert res["profile"] == "smoke"  # the only profile there: picked by default
    md = res["markdown"].read_text()
    # Identity on the title page; no machine path anywhere (the results live under /tmp here).
    title = md.split("## 1.")[0]
    assert "312551001" in title and "Wang Xiao-Ming" in title
    assert_no_machine_path(md)
    assert_no_machine_path(res["html"].read_text())
    # Per group: the real code, a computed discussion, a conclusion from the verdicts.
    sections = {g: md.split(h)[1].split("\n## ")[0] for g, h in (
        ("norm", "## 2. Input normalization"), ("aug", "## 3. Data augmentation"),
        ("lr", "## 4. Learning rate"), ("batch", "## 5. Batch size"))}  # fmt: skip
    for g, text in sections.items():
        assert "```python\ndef " in text, g
        assert "**Discussion.**" in text and "*Overfitting.*" in text and "*Speed.*" in text, g
        assert "**The data cannot decide**" in text, g  # one seed against two: n too small
    assert "def normalization_stats" in sections["norm"] and "def cutout" in sections["aug"]
    assert "def lr_at" in sections["lr"] and "def make_schedule" in sections["batch"]
    assert "High learning rates diverged" not in md and "**No run diverged.**" in md
    for heading in HEADINGS:
        assert heading in md, heading
    assert "PREVIEW, NOT REAL RESULTS" in md
    # Numbers quoted from the results files: the baseline's mean test accuracy as stats prints
    # it, and the sampled normalization statistics the run used.
    base = [json.loads((smoke_results / "smoke" / f"baseline__seed{s}.json").read_text())
            for s in range(2)]  # fmt: skip
    mean_acc = 100 * sum(r["test_acc"] for r in base) / 2
    assert f"{mean_acc:.2f} ±" in md
    sampled = json.loads((smoke_results / "smoke" / "norm_std_sampled__seed0.json").read_text())
    assert f"{sampled['norm_stats']['mean'][0]:.4f}" in md
    assert base[0]["finished_at"] in md or base[1]["finished_at"] in md
    assert f"{sum(p.numel() for p in resnet18().parameters()):,}" in md
    # Missing groups say how to fill them; every figure the page links exists.
    html = res["html"].read_text()
    for name in ("overlay_norm.png", "augment.png", "lr_schedules.png", "lr_range.png",
                 "final_history.png", "final_confusion.png"):  # fmt: skip
        assert f"fig/{name}" in html and (res["html"].parent / "fig" / name).is_file(), name
    if res["pdf"] is not None:
        assert res["pdf"].read_bytes()[:5] == b"%PDF-"
        if shutil.which("pdftotext"):
            text = pdf_text(res["pdf"])
            assert "PREVIEW, NOT REAL RESULTS" in text
            assert "312551001" in text and "Wang Xiao-Ming" in text
            assert_no_machine_path(text)
            assert all(h in text for h in HEADINGS)
            assert f"{mean_acc:.2f}" in text


# ---------------------------------------------------------------- hand-made results


def fake_run(name, group, seed, acc, profile="full", epochs=3):
    """A results dict shaped like run_experiment's, with made-up numbers."""
    cfg = dataclasses.asdict(make_config(name, profile, seed))
    hist = {"epoch": list(range(1, epochs + 1)), "lr": [cfg["lr"]] * epochs,
            "train_loss": [2.0 - 0.3 * e for e in range(epochs)],
            "train_acc": [acc - 0.1 + 0.05 * e for e in range(epochs)],
            "val_loss": [1.5 - 0.2 * e for e in range(epochs)],
            "val_acc": [acc - 0.05 + 0.02 * e for e in range(epochs)],
            "seconds": [10.0, 9.0, 9.5][:epochs]}  # fmt: skip
    conf = [[90 if i == j else 1 for j in range(10)] for i in range(10)]
    return {"name": name, "experiment": name, "group": group, "profile": profile, "seed": seed,
            "status": "ok", "message": "", "config": cfg, "history": hist, "test_loss": 0.3,
            "test_acc": acc, "confusion": conf,
            "norm_stats": {"mode": cfg["norm"], "mean": [0.49, 0.48, 0.45],
                           "std": [0.25, 0.24, 0.26]},
            "env": {"device": "cuda", "gpu": "Test GPU 80GB", "torch": "2.x", "torchvision": "0.x",
                    "python": "3.11"},
            "wall_seconds": 30.0, "peak_mem_mb": 1000.0, "data": "image folder test",
            "finished_at": f"2026-01-0{seed + 1}T00:00:00+00:00", "command": "experiments.py run"}  # fmt: skip


@pytest.fixture
def full_results(tmp_path):
    """Hand-made full-profile results: one clear win, one tie, a final run over 90%."""
    runs = {("baseline", "baseline"): [0.850, 0.852, 0.848],
            ("aug_crop_flip", "aug"): [0.910, 0.912, 0.908],
            ("lr_cosine", "lr"): [0.849, 0.853, 0.850],
            ("final", "final"): [0.951, 0.953]}  # fmt: skip
    for (name, group), accs in runs.items():
        for seed, acc in enumerate(accs):
            save_json(
                fake_run(name, group, seed, acc), tmp_path / "full" / f"{name}__seed{seed}.json"
            )
    return tmp_path


def test_full_report_without_banner_claims_only_verdicts(full_results, tmp_path):
    res = build_report.build(results_dir=full_results, out=tmp_path / "r.pdf", engine="html",
                             build_dir=tmp_path / "build", data_dir=tmp_path / "no-data")  # fmt: skip
    md = res["markdown"].read_text()
    assert res["profile"] == "full" and "PREVIEW" not in md
    conclusion = md.split("## 9. Conclusion")[1].split("## Appendix")[0]
    assert "**aug_crop_flip**: better than the baseline" in conclusion
    assert "lr_cosine" in conclusion.split("No difference larger than the run-to-run noise")[1]
    assert "lr_cosine**: better" not in md and "lr_cosine**: worse" not in md
    assert "95.20 ± 0.14% test accuracy over 2 runs: the lab's 90% target is reached" in md
    assert "Test GPU 80GB" in md  # the hardware comes from the results' env
    assert "No example images" in md  # no data: said, not crashed
    assert "**No norm run finished in the full profile**" in md  # a missing group says so
    assert "python experiments.py run norm --profile full" in md  # ... and how to fill it
    # 3 seeds against 3: a verdict; 2 final seeds against 3: an interval too.
    assert "**aug_crop_flip** is better" in md
    assert "(no interval" not in md.split("## 6. Final model")[0]


def test_machine_paths_are_cleaned():
    from report import discussion

    assert discussion.clean("image folder /tmp/lab3-cache/unpacked-1/cifar10-jpeg") == (
        "image folder cifar10-jpeg")  # fmt: skip
    cmd = "experiments.py run baseline --out /root/out/results --no-progress"
    assert discussion.clean(cmd) == "experiments.py run baseline --out results --no-progress"
    assert discussion.clean("results/full/x.json, 1/2") == "results/full/x.json, 1/2"


def test_interrupted_runs_from_logs(tmp_path):
    from report import discussion

    (tmp_path / "lane1.log").write_text(
        "[a seed 0, profile full]\nEpoch: 1\nVal loss: 1 | Val acc: 0.5\nTest acc: 0.6\n"
        "[b seed 0, profile full]\nEpoch: 1\nEpoch: 2\nVal loss: 1 | Val acc: 0.7\n"
        "interrupted\n")  # fmt: skip
    (tmp_path / "grid.log").write_text(
        "grid starts with 399s left of 470s\ngrid ended after 472s\n"
    )
    stopped = discussion.interrupted_runs(tmp_path, {"a": [{"seed": 0}]})
    assert stopped == [{"name": "b", "seed": 0, "epochs": 2, "val_acc": 0.7, "log": "lane1.log"}]
    assert "deadline of 470 s" in discussion._deadline(tmp_path)


def test_verdict_lines_follow_stats():
    rows = [{"name": "a", "verdict": "better",
             "vs_baseline": {"diff": 0.02, "lo": 0.01, "hi": 0.03, "n_a": 3, "n_b": 3}},
            {"name": "b", "verdict": "within noise", "vs_baseline": {}},
            {"name": "c", "verdict": "n too small", "vs_baseline": None},
            {"name": "baseline", "verdict": ""}]  # fmt: skip
    text = tables.verdict_lines(rows)
    assert "**a**: better than the baseline, +2.00 pp" in text and "[+1.00, +3.00]" in text
    assert "(the 95% interval contains 0): b." in text
    assert "Too few seeds to tell" in text and "c." in text
    assert "**baseline**" not in text and len(text.splitlines()) == 3


def test_pick_profile(tmp_path):
    with pytest.raises(LabError, match="no results"):
        build_report.pick_profile(tmp_path)
    with pytest.raises(LabError, match="unknown profile"):
        build_report.pick_profile(tmp_path, "huge")
    for p in ("smoke", "quick"):
        (tmp_path / p).mkdir()
        (tmp_path / p / "baseline__seed0.json").write_text("{}")
    assert build_report.pick_profile(tmp_path) == "quick"
    assert build_report.pick_profile(tmp_path, "smoke") == "smoke"


def test_architecture_counts_come_from_the_model():
    arch = tables.architecture(run_width=16)
    assert arch["params_cifar"] == sum(p.numel() for p in resnet18().parameters())
    assert arch["params_imagenet"] == sum(p.numel() for p in resnet18(stem="imagenet").parameters())
    assert arch["params_run"] == sum(p.numel() for p in resnet18(width=16).parameters())
    assert arch["projections"] == 3 and arch["blocks"] == 8
    for stage, size in (("conv2_x", "64 x 32 x 32"), ("conv5_x", "512 x 4 x 4")):
        assert any(stage in line and size in line for line in arch["stage_table"].splitlines())


def test_cli_error_is_one_line(tmp_path):
    proc = subprocess.run([sys.executable, str(REPO / "report" / "build_report.py"),
                           "--results", str(tmp_path), "--engine", "html"],
                          capture_output=True, text=True, cwd=tmp_path)  # fmt: skip
    assert proc.returncode == 2
    assert proc.stderr.startswith("error: no results") and proc.stderr.count("\n") == 1


@needs_engine
@needs_pdftotext
@pytest.mark.skipif(not has_cjk_font(), reason="no CJK font (apt-get install fonts-noto-cjk)")
def test_traditional_chinese_renders(tmp_path):
    line = "這是一行繁體中文：訓練與驗證準確率。"
    page = render.markdown_to_html(f"# 報告\n\n{line}\n\n| 實驗 | 準確率 |\n|---|---|\n| 基準 | 91.2% |\n",
                                   "測試")  # fmt: skip
    (tmp_path / "t.html").write_text(page, encoding="utf-8")
    for engine in ENGINES:
        pdf = render.html_to_pdf(tmp_path / "t.html", tmp_path / f"{engine}.pdf", engine)
        text = pdf_text(pdf)
        assert line in text and "基準 91.2%" in text, engine


# ---------------------------------------------------------------- notebook export


def test_fold_carriage_returns():
    bar = "\rep 1:   0%|   | 0/4\rep 1:  50%|#  | 2/4\rep 1: 100%|###| 4/4\n"
    assert export_notebook.fold_carriage_returns(bar) == "ep 1: 100%|###| 4/4\n"
    cleared = "Epoch: 1\n\rbar 10%\rbar 90%\r          \r\nEpoch: 2\n"
    assert export_notebook.fold_carriage_returns(cleared) == "Epoch: 1\nEpoch: 2\n"
    assert export_notebook.fold_carriage_returns("abcdef\rXY") == "XYcdef"  # overwrite, not replace
    assert export_notebook.fold_carriage_returns("plain\n\nlines\r\n") == "plain\n\nlines\n"


def _nbclient_style_notebook():
    """What nbclient saves: every tqdm redraw is its own stderr output."""
    import nbformat

    nb = nbformat.v4.new_notebook()
    cell = nbformat.v4.new_code_cell("train()  # " + "x" * 200, execution_count=1)
    cell.outputs = [
        nbformat.v4.new_output("stream", name="stdout", text="[baseline seed 0, profile full]\n")
    ]
    cell.outputs += [nbformat.v4.new_output("stream", name="stderr", text=f"\repoch 1/1: {p:3d}%|")
                     for p in (0, 25, 50, 75, 100)]  # fmt: skip
    cell.outputs += [nbformat.v4.new_output("stream", name="stderr", text="\r" + " " * 20 + "\r"),
                     nbformat.v4.new_output("stream", name="stdout", text="Test loss: 0.3 | Test acc: 0.9312\n")]  # fmt: skip
    # Taller than a page: the classic template's absolutely positioned <body> once cut the
    # PDF after page 1.
    log = "".join(f"Epoch: {i}\n" for i in range(1, 151))
    cell.outputs.insert(1, nbformat.v4.new_output("stream", name="stdout", text=log))
    cell2 = nbformat.v4.new_code_cell("for i in tqdm(range(3)): pass", execution_count=2)
    cell2.outputs = [nbformat.v4.new_output("stream", name="stderr", text=f"\r{i}/3 done")
                     for i in range(4)] + [nbformat.v4.new_output("stream", name="stderr", text="\n")]  # fmt: skip
    nb.cells = [nbformat.v4.new_markdown_cell("# 實驗 Lab 3"), cell, cell2]
    return nb


def test_clean_notebook_keeps_final_states():
    nb = export_notebook.clean_notebook(_nbclient_style_notebook())
    first, second = nb.cells[1].outputs, nb.cells[2].outputs
    # The cleared bar is gone and the two stdout pieces around it are one output again.
    assert [o["name"] for o in first] == ["stdout"]
    assert first[0]["text"].startswith("[baseline seed 0, profile full]\nEpoch: 1\n")
    assert first[0]["text"].endswith("Epoch: 150\nTest loss: 0.3 | Test acc: 0.9312\n")
    assert [o["text"] for o in second] == ["3/3 done\n"]


def test_export_html_and_pdf(tmp_path):
    import nbformat

    path = tmp_path / "nb.ipynb"
    nbformat.write(_nbclient_style_notebook(), path)
    html = export_notebook.export(path, tmp_path / "nb.html").read_text()
    assert "3/3 done" in html and "1/3 done" not in html and "epoch 1/1" not in html
    assert "pre-wrap" in html and "實驗" in html
    assert "<script" not in html  # nothing to fetch or run
    with pytest.raises(LabError, match="must end in .pdf or .html"):
        export_notebook.export(path, tmp_path / "nb.docx")
    if ENGINES:
        pdf = export_notebook.export(path, tmp_path / "nb.pdf")
        assert pdf.read_bytes()[:5] == b"%PDF-"
        if shutil.which("pdftotext"):
            text = pdf_text(pdf)
            assert "Test acc: 0.9312" in text and "3/3 done" in text and "25%" not in text
            assert "Epoch: 150" in text and "Epoch: 1 " in text  # every page, not just the first
