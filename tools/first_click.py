"""A fresh visitor's first minute in a real browser: start-up, then a click on each example → its views.

python tools/first_click.py [--visitors 5] [--chromium /usr/bin/chromium] [--log app.log]

Starts `python app.py` on a free local port (offline default encoder, the examples warmed as for visitors) and
prints the start-up times: process start → page served, and → the examples' views computed (the app's log line
"examples ready"). Then, for each visitor, a new page of one browser (the first has an empty cache; each is a new
session) loads the app and, once the page has drawn itself (no long task in the browser for 1.5 s), clicks one
example (alternating between them); per click it prints ms from the click to the summary line ("Kept … tokens") on
the page, to the kept-token overlay decoded, and to the budget chart drawn. The browser and the server share this
machine's cores, as on a laptop.
"""

from __future__ import annotations

import argparse
import os
import re
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
LONG_TASKS = """window.__lastLongTask = 0; new PerformanceObserver(l => { for (const e of l.getEntries())
  window.__lastLongTask = Math.max(window.__lastLongTask, e.startTime + e.duration) }).observe({type: 'longtask'});"""
CHART = "() => /Frame budgets \\(sum/.test(document.querySelector('#budgets .gtitle')?.textContent || '')"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start(log: Path) -> tuple[str, subprocess.Popen, float, float]:
    """(url, process, s to the page served, s to the examples ready) of a new `python app.py`."""
    import httpx

    port = _free_port()
    env = {**os.environ, "GRADIO_SERVER_PORT": str(port), "GRADIO_SERVER_NAME": "127.0.0.1"}
    t0 = time.perf_counter()
    with open(log, "w") as out:
        proc = subprocess.Popen([sys.executable, "app.py"], cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT)
    url, served = f"http://127.0.0.1:{port}/", float("nan")
    deadline = t0 + 240
    while time.perf_counter() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"app.py exited with {proc.returncode}: {log.read_text()[-2000:]}")
        if served != served:  # not yet served
            try:
                if httpx.get(url, timeout=1).status_code == 200:
                    served = time.perf_counter() - t0
            except httpx.HTTPError:
                pass
        m = re.search(r"examples ready in", log.read_text())
        if m and served == served:
            return url, proc, served, time.perf_counter() - t0
        time.sleep(0.1)
    proc.kill()
    raise SystemExit("app.py did not serve the page and warm the examples within 4 minutes")


def visit(browser, url: str, index: int) -> tuple[float, float, float]:
    page = browser.new_page(viewport={"width": 1400, "height": 1100})
    page.add_init_script(LONG_TASKS)
    try:
        page.goto(url)
        tiles = page.locator("#examples img")
        tiles.first.wait_for(timeout=60_000)
        page.wait_for_function("el => el.complete && el.naturalWidth > 0", arg=tiles.nth(index).element_handle())
        # the page has drawn itself (no long task in the browser for 1.5 s): what a visitor sees before clicking
        page.wait_for_function("() => performance.now() - window.__lastLongTask > 1500", timeout=60_000)
        t0 = time.perf_counter()
        tiles.nth(index).click()
        page.wait_for_function("() => /Kept [0-9,]+ of [0-9,]+ tokens/.test(document.body.innerText)",
                               timeout=120_000, polling="raf")
        t_summary = time.perf_counter() - t0
        page.wait_for_function("() => { const el = document.querySelector('#overlay img');"
                               " return !!el && el.complete && el.naturalWidth > 0 }", timeout=60_000, polling=5)
        t_overlay = time.perf_counter() - t0
        page.wait_for_function(CHART, timeout=60_000, polling=5)
        t_chart = time.perf_counter() - t0
        return t_summary, t_overlay, t_chart
    finally:
        page.close()


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(prog="python tools/first_click.py", description=__doc__)
    ap.add_argument("--visitors", type=int, default=5)
    ap.add_argument("--chromium", default="/usr/bin/chromium")
    ap.add_argument("--log", type=Path, default=None, help="keep the app's log in this file")
    a = ap.parse_args(argv)
    from playwright.sync_api import sync_playwright

    with tempfile.TemporaryDirectory() as tmp:
        log = a.log or Path(tmp) / "app.log"
        url, proc, served, ready = start(log)
        try:
            with sync_playwright() as p:
                browser = p.chromium.launch(executable_path=a.chromium, args=["--no-sandbox", "--disable-gpu"])
                rows = [(i % 2, *visit(browser, url, i % 2)) for i in range(a.visitors)]
                browser.close()
        finally:
            proc.terminate()
            proc.wait(timeout=30)
    print(f"start-up: page served {served:.1f} s, examples ready {ready:.1f} s")
    widths = (12, 12, 10)
    print(f"{'visitor':>7}{'example':>9}{'summary ms':>12}{'overlay ms':>12}{'chart ms':>10}")
    for i, (ex, *r) in enumerate(rows):
        print(f"{i:>7}{ex:>9}" + "".join(f"{1e3 * v:>{w}.0f}" for v, w in zip(r, widths, strict=True)))
    med = [statistics.median(col) for col in list(zip(*rows, strict=True))[1:]]
    print(f"{'median':>7}{'':>9}" + "".join(f"{1e3 * v:>{w}.0f}" for v, w in zip(med, widths, strict=True)))


if __name__ == "__main__":
    main()
