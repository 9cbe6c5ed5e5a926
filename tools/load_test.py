"""Bounded load test and soak on localhost: N clients × M requests to /analyze, every output downloaded and checked.

python tools/load_test.py [--clients 20] [--requests 5] [--videos a.mp4,b.mp4] [--url http://127.0.0.1:7860/]
    [--pid PID]   (the server's process id: its RSS is sampled during the run and reported)

Each client has its own retention; each answer is checked against its own request: K from its retention, the
retention and τ it echoes, the download JSON's retention and video digest, and every image decoded completely.
Outputs of requests with equal parameters must be byte-identical, those of other retentions must differ.
No retries: a transport error is a failure. Traffic goes to a local server only; every loop is bounded.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import statistics
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def rss_mb(pid: int) -> float:
    """Resident memory of a process (Linux /proc), MB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def _check(res: list, r: float, tau: float) -> tuple[str, dict]:
    """'' when the answer belongs to its request (else what is wrong), and the hashes of its files."""
    from PIL import Image

    s = res[6]
    n = s["tokens_total"]
    if s["tokens_kept"] != max(1, math.floor(r * n + 1e-9)) or s["params"]["retention"] != r \
            or s["params"]["tau"] != tau or sum(s["budgets"]) != s["tokens_kept"]:
        return f"summary mismatch: r={r} τ={tau} got kept={s['tokens_kept']} r={s['params']['retention']}", {}
    hashes = {}
    for name, path in zip(("overlay", "entropy", "gradient", "score"), res[1:5], strict=True):
        data = Path(path).read_bytes()
        with Image.open(path) as im:
            im.load()  # raises on a truncated file
        hashes[name] = hashlib.sha1(data).hexdigest()
    doc = json.loads(Path(res[7]).read_text())
    if doc["retention"] != r or doc["video_digest"] != s["video_digest"] or len(doc["indices"]) != s["tokens_kept"]:
        return f"download mismatch: r={r} got r={doc['retention']}", {}
    with open(res[8], "rb") as f:
        if f.read(2) != b"PK":
            return "npz download is not a zip archive", {}
    return "", hashes


def run(url: str, clients: int, requests: int, videos: list[str], encoder: str, frames: int,
        pid: int | None = None) -> dict:
    from gradio_client import Client, handle_file

    seen: dict[tuple, set] = {}
    asked: dict[tuple, int] = {}  # correct answers per (video, r, τ): equal requests are asked by two clients at once
    lock = threading.Lock()
    peak = [rss_mb(pid) if pid else float("nan")]
    stop = threading.Event()

    def sample_rss() -> None:
        while pid and not stop.wait(0.2):
            peak[0] = max(peak[0], rss_mb(pid))

    def one_client(c: int) -> list[tuple[bool, float, str]]:
        client = Client(url, verbose=False)
        out = []
        r = round(0.05 + 0.9 * ((c // 2) % 17) / 16, 3)  # clients 2j and 2j+1 ask the same requests at once
        for i in range(requests):
            video = videos[(c // 2 + i) % len(videos)]
            tau = [1.0, 0.1][i % 2]
            t0 = time.perf_counter()
            try:
                res = client.predict(video=handle_file(video), retention=r, tau=tau, encoder=encoder,
                                     num_frames=frames, api_name="/analyze")
                err, hashes = _check(res, r, tau)
                if not err:
                    with lock:
                        seen.setdefault((video, r, tau), set()).add(tuple(sorted(hashes.items())))
                        asked[(video, r, tau)] = asked.get((video, r, tau), 0) + 1
                out.append((not err, time.perf_counter() - t0, err))
            except Exception as e:  # counted as a failure, never retried
                out.append((False, time.perf_counter() - t0, f"{type(e).__name__}: {e}"))
        return out

    sampler = threading.Thread(target=sample_rss, daemon=True)
    sampler.start()
    t0 = time.perf_counter()
    with ThreadPoolExecutor(clients) as pool:
        results = [x for xs in pool.map(one_client, range(clients)) for x in xs]
    wall = time.perf_counter() - t0
    stop.set()
    sampler.join()
    # equal requests, equal bytes; another retention on the same clip and τ, another overlay
    unstable = [k for k, v in seen.items() if len(v) != 1]
    overlays: dict[tuple, set] = {}
    for (video, _r, tau), v in seen.items():
        overlays.setdefault((video, tau), set()).update(dict(h)["overlay"] for h in v)
    distinct = all(len(v) == sum(1 for k in seen if (k[0], k[2]) == key) for key, v in overlays.items())
    lat = sorted(x[1] for x in results)
    return {"requests": len(results), "ok": sum(x[0] for x in results), "wall_s": wall,
            "median_s": statistics.median(lat), "p95_s": lat[int(0.95 * (len(lat) - 1))], "max_s": lat[-1],
            "unstable": unstable, "distinct_overlays": distinct, "peak_rss_mb": peak[0],
            "repeated": sum(1 for n in asked.values() if n > 1),
            "errors": [x[2] for x in results if not x[0]][:5]}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--url", default="http://127.0.0.1:7860/")
    ap.add_argument("--clients", type=int, default=20)
    ap.add_argument("--requests", type=int, default=5)
    ap.add_argument("--videos", default=str(ROOT / "assets" / "bigbuckbunny.mp4"), help="comma-separated")
    ap.add_argument("--encoder", default="efficientnet-lite0")
    ap.add_argument("--frames", type=int, default=8)
    ap.add_argument("--pid", type=int, help="the server's process id, to report its memory")
    a = ap.parse_args()
    if not a.url.startswith(("http://127.", "http://localhost", "http://[::1]")):
        print("refusing: the load test only targets a server on this machine", file=sys.stderr)
        return 2
    before = rss_mb(a.pid) if a.pid else float("nan")
    res = run(a.url, a.clients, a.requests, a.videos.split(","), a.encoder, a.frames, a.pid)
    after = rss_mb(a.pid) if a.pid else float("nan")
    print(f"{res['ok']}/{res['requests']} correct answers in {res['wall_s']:.1f} s "
          f"({res['requests'] / res['wall_s']:.1f} req/s); latency p50 {res['median_s']:.2f} s, "
          f"p95 {res['p95_s']:.2f} s, max {res['max_s']:.2f} s; equal requests equal bytes: {not res['unstable']}; "
          f"retentions give distinct overlays: {res['distinct_overlays']}")
    if a.pid:
        print(f"server RSS before {before:.0f} MB, peak {res['peak_rss_mb']:.0f} MB, after {after:.0f} MB")
    for e in res["errors"]:
        print("  error:", e)
    return 0 if res["ok"] == res["requests"] and not res["unstable"] else 1


if __name__ == "__main__":
    sys.exit(main())
