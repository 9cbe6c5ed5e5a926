"""Slider latency in a real browser: release of the retention slider → new overlay image (and chart).

python tools/slider_latency.py [--url http://127.0.0.1:7860/] [--moves 8] [--slider retention|tau]
                               [--chromium /usr/bin/chromium]

Without --url it starts `python app.py` on a free local port (offline default encoder) and stops it afterwards.
Uploads the example clip, waits for the first views, then clicks the retention slider at --moves positions
(one every ~1.3 s) and prints, per move: ms from the click to the overlay's new `src`, to that image decoded,
to the budget chart's new title, and when the browser sent its queue request. The medians are the figures
docs/benchmarks.md quotes; the browser and the server share this machine's cores, as on a laptop. `--slider tau`
moves the log τ slider instead: every move computes a new entropy map and sends the entropy, score and overlay
images (the chart's title does not change with τ: its column is left empty).
"""

from __future__ import annotations

import argparse
import os
import socket
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SAMPLE = ROOT / "assets" / "bigbuckbunny.mp4"
TITLE = "() => (document.querySelector('.gtitle') || {}).textContent || ''"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _start_app() -> tuple[str, subprocess.Popen]:
    import httpx

    port = _free_port()
    env = {**os.environ, "GRADIO_SERVER_PORT": str(port)}
    proc = subprocess.Popen([sys.executable, "app.py"], cwd=ROOT, env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}/"
    for _ in range(240):  # bounded: 2 minutes
        if proc.poll() is not None:
            raise SystemExit(f"app.py exited with {proc.returncode}")
        try:
            if httpx.get(url, timeout=1).status_code == 200:
                return url, proc
        except httpx.HTTPError:
            pass
        time.sleep(0.5)
    proc.kill()
    raise SystemExit("app.py did not answer within 2 minutes")


#: index of each slider among the page's range inputs (app.py's layout order)
SLIDERS = {"retention": 0, "tau": 2}


def measure(url: str, moves: int, chromium: str, slider: str = "retention") -> list[tuple[float, float, float, float]]:
    from playwright.sync_api import sync_playwright

    rows = []
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=chromium, args=["--no-sandbox", "--disable-gpu"])
        page = browser.new_page(viewport={"width": 1400, "height": 1100})
        joins: list[float] = []
        page.on("request", lambda r: joins.append(time.perf_counter()) if "/queue/join" in r.url else None)
        page.goto(url)
        page.wait_for_selector("text=ENTROPY-SELECT Explorer")
        page.set_input_files("input[type=file]", str(SAMPLE))
        page.wait_for_selector("text=/Kept [0-9,]+ of [0-9,]+ tokens/", timeout=300_000)
        overlay = page.locator("#overlay img").first
        page.wait_for_function("el => el && el.complete && el.naturalWidth > 0", arg=overlay.element_handle())
        page.wait_for_timeout(1000)
        box = page.locator("input[type=range]").nth(SLIDERS[slider]).bounding_box()
        positions = [0.1, 0.3, 0.15, 0.4, 0.2, 0.35, 0.12, 0.25, 0.45, 0.08]
        for i in range(moves):
            before, title = overlay.get_attribute("src"), page.evaluate(TITLE)
            joins.clear()
            t0 = time.perf_counter()
            page.mouse.click(box["x"] + box["width"] * positions[i % len(positions)], box["y"] + box["height"] / 2)
            page.wait_for_function("([el, old]) => el.getAttribute('src') !== old",
                                   arg=[overlay.element_handle(), before], timeout=60_000, polling=5)
            t_src = time.perf_counter() - t0
            page.wait_for_function("el => el.complete && el.naturalWidth > 0", arg=overlay.element_handle(),
                                   polling=5)
            t_img = time.perf_counter() - t0
            t_chart = float("nan")
            if slider == "retention":
                page.wait_for_function(f"old => ({TITLE})() !== old", arg=title, timeout=60_000, polling=5)
                t_chart = time.perf_counter() - t0
            t_join = (joins[0] - t0) if joins else float("nan")
            rows.append((t_join, t_src, t_img, t_chart))
            page.wait_for_timeout(800)
        browser.close()
    return rows


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(prog="python tools/slider_latency.py", description=__doc__)
    ap.add_argument("--url", default=None, help="a running app; default: start app.py on a free port")
    ap.add_argument("--moves", type=int, default=8)
    ap.add_argument("--slider", choices=sorted(SLIDERS), default="retention")
    ap.add_argument("--chromium", default="/usr/bin/chromium")
    a = ap.parse_args(argv)
    proc = None
    url = a.url
    if url is None:
        url, proc = _start_app()
    try:
        rows = measure(url, a.moves, a.chromium, a.slider)
    finally:
        if proc is not None:
            proc.terminate()
            proc.wait(timeout=30)
    print(f"{'move':>4}{'request ms':>12}{'overlay src ms':>16}{'image ms':>10}{'chart ms':>10}")
    for i, r in enumerate(rows):
        print(f"{i:>4}" + "".join(f"{1e3 * v:>{w}.0f}" for v, w in zip(r, (12, 16, 10, 10), strict=True)))
    med = [statistics.median(col) for col in zip(*rows, strict=True)]
    print(f"{'med':>4}" + "".join(f"{1e3 * v:>{w}.0f}" for v, w in zip(med, (12, 16, 10, 10), strict=True)))


if __name__ == "__main__":
    main()
