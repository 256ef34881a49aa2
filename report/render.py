"""HTML -> PDF, offline, with CJK text (the notebook export's last step).

Two PDF engines, both fed the same HTML and CSS (report/export_notebook.py's PRINT_CSS):
- weasyprint (default): a Python package (`pip install weasyprint`) on the system's Pango;
  about 20 MB on top of the lab's environment, a report in a few seconds.
- chromium: headless Chromium's print-to-PDF (`apt-get install chromium`), about 350 MB; used
  when weasyprint is missing or asked for with --engine chromium.
Neither downloads anything: weasyprint is given a URL fetcher that only reads local files and
data: URIs, and Chromium runs with networking features off. Chinese, Japanese and Korean text
needs a CJK font on the machine (`apt-get install fonts-noto-cjk`); the CSS asks for
Noto Sans CJK TC after the Latin fonts, so Traditional Chinese gets the Taiwan glyph forms.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from pathlib import Path

from engine.checkpoint import atomic_write
from engine.errors import LabError

ENGINES = ("weasyprint", "chromium")
CHROMIUM_NAMES = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")
INSTALL_HINT = (
    "install one: `pip install weasyprint` (needs libpango, present on Debian/Ubuntu desktops; "
    "`apt-get install libpango-1.0-0 libpangoft2-1.0-0` elsewhere) or "
    "`apt-get install chromium`; plus `apt-get install fonts-noto-cjk` for Chinese text"
)


def chromium_binary() -> str | None:
    for name in CHROMIUM_NAMES:
        if found := shutil.which(name):
            return found
    return None


def weasyprint_available() -> bool:
    try:
        import weasyprint  # noqa: F401  (raises OSError where Pango is missing)
    except (ImportError, OSError):
        return False
    return True


def available_engines() -> list[str]:
    found = []
    if weasyprint_available():
        found.append("weasyprint")
    if chromium_binary():
        found.append("chromium")
    return found


def pick_engine(engine: str = "auto") -> str:
    """The engine to use: the one asked for if it is there, else the first available."""
    have = available_engines()
    if engine == "auto":
        if not have:
            raise LabError(f"no PDF engine found; {INSTALL_HINT}")
        return have[0]
    if engine not in ENGINES:
        raise LabError(f"unknown PDF engine {engine!r}; choose auto, {', '.join(ENGINES)}")
    if engine not in have:
        raise LabError(f"the {engine} PDF engine is not installed; {INSTALL_HINT}")
    return engine


def _offline_fetcher():
    """A weasyprint URL fetcher that only reads local files and data: URIs (a report must
    build offline, and nbconvert's pages link CDN scripts)."""
    try:  # weasyprint >= 66: a fetcher class with a protocol allow-list
        from weasyprint.urls import URLFetcher

        return URLFetcher(allowed_protocols=("file", "data"))
    except ImportError:  # older releases: a function
        from weasyprint import default_url_fetcher

        def fetch(url: str, *args, **kwargs):
            if url.startswith(("file:", "data:")):
                return default_url_fetcher(url, *args, **kwargs)
            raise ValueError(f"not fetching {url}: the report is built offline")

        return fetch


def html_to_pdf(html_path: str | os.PathLike, pdf_path: str | os.PathLike, engine: str) -> Path:
    """Print `html_path` (relative image paths resolved beside it) to `pdf_path`, atomically."""
    html_path, pdf_path = Path(html_path).resolve(), Path(pdf_path)
    if engine == "weasyprint":
        import logging

        from weasyprint import HTML

        # weasyprint logs every unsupported CSS property of nbconvert's stylesheets; keep errors.
        logging.getLogger("weasyprint").setLevel(logging.ERROR)
        doc = HTML(filename=str(html_path), url_fetcher=_offline_fetcher())
        atomic_write(pdf_path, lambda f: doc.write_pdf(f))
        return pdf_path
    if engine == "chromium":
        return _chromium_pdf(html_path, pdf_path)
    raise LabError(f"unknown PDF engine {engine!r}; choose {', '.join(ENGINES)}")


def _chromium_pdf(html_path: Path, pdf_path: Path, timeout: int = 120) -> Path:
    binary = chromium_binary()
    if binary is None:
        raise LabError(f"chromium not found; {INSTALL_HINT}")
    pdf_path.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="lab3-chromium-") as profile:
        tmp = Path(profile) / "out.pdf"
        cmd = [
            binary,
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--disable-extensions",
            "--no-pdf-header-footer",
            f"--user-data-dir={profile}",
            f"--print-to-pdf={tmp}",
            html_path.as_uri(),
        ]
        try:
            proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
        except subprocess.TimeoutExpired:
            raise LabError(f"chromium did not finish printing {html_path} in {timeout} s") from None
        if not tmp.exists() or tmp.stat().st_size == 0:
            tail = (proc.stderr or proc.stdout).strip().splitlines()[-1:] or ["no output"]
            raise LabError(f"chromium could not print {html_path}: {tail[0][:200]}")
        atomic_write(pdf_path, lambda f: f.write(tmp.read_bytes()))
    return pdf_path
