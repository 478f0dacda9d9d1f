"""Screenshots of the demo report and a diagnose report for the README (docs/images/*.png).

A dry-run demo and a diagnosis of a small random GRU, opened in headless Chromium (Debian's
chromium and chromium-driver), the top of each page captured at 1200 px wide:

    PYTHONPATH=src python scripts/screenshots.py [--out docs/images]
"""

from __future__ import annotations

import argparse
import os
import shutil
import tempfile
from pathlib import Path

import torch
from PIL import Image

from bptt import demo
from bptt.diagnose import diagnose

WIDTH, HEIGHT = 1200, 1500  # CSS pixels of the captured part of each page


def capture(pages: dict[str, Path], out: Path) -> list[Path]:
    os.environ["SE_OFFLINE"] = "true"  # never let selenium fetch a driver
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    opts = webdriver.ChromeOptions()
    opts.binary_location = shutil.which("chromium") or "/usr/bin/chromium"
    for flag in (
        "--headless=new",
        "--no-sandbox",
        "--disable-gpu",
        "--hide-scrollbars",
        f"--window-size={WIDTH},{HEIGHT}",
    ):
        opts.add_argument(flag)
    driver = webdriver.Chrome(
        service=Service(shutil.which("chromedriver") or "/usr/bin/chromedriver"), options=opts
    )
    written = []
    try:
        for name, page in pages.items():
            driver.get(page.resolve().as_uri())
            path = out / f"{name}.png"
            driver.save_screenshot(str(path))
            img = Image.open(path).convert("RGB")
            img.quantize(colors=256).save(path, optimize=True)  # a palette PNG: a few hundred KB
            written.append(path)
    finally:
        driver.quit()
    return written


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("docs/images"))
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        demo.run(demo.DemoConfig(out=str(root / "demo"), dry_run=True))
        torch.manual_seed(0)
        torch.save(torch.nn.GRU(3, 32).state_dict(), root / "gru.pt")
        torch.save(torch.randn(60, 4, 3), root / "inputs.pt")
        diagnose(root / "gru.pt", root / "gru", inputs=root / "inputs.pt")
        pages = {
            "demo-report": root / "demo" / "report.html",
            "diagnose-report": root / "gru" / "report.html",
        }
        for path in capture(pages, args.out):
            print(f"{path}: {path.stat().st_size // 1000} KB")


if __name__ == "__main__":
    main()
