"""The benchmark (python -m selector.bench): columns and agreement with the reference."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import torch

from selector.method.pipeline import num_kept


def test_bench_prints_every_column_and_agrees_with_the_reference():
    """`python -m selector.bench` on a small grid: one row per retention with the selection time, the time
    with the rows copied out, both spreads, the reference time and speed-up per row, and the count of kept
    tokens that differ from the reference's (0 here). Checks the table, not the timings."""
    r = subprocess.run([sys.executable, "-m", "selector.bench", "--device", "cpu", "--grid", "3x6x7x16", "--repeats",
                        "3"], capture_output=True, text=True, timeout=300, cwd=Path(__file__).resolve().parents[1])
    assert r.returncode == 0, r.stderr[-2000:]
    lines = r.stdout.splitlines()
    head = next(line for line in lines if line.startswith("grid"))
    for col in ("median ms", "Mtok/s", "+rows ms", "peak MiB", "max/min", "+rows", "ref ms", "speed-up"):
        assert col in head, col
    table = [line.split() for line in lines if line.split() and line.split()[-1].endswith("×")]
    table = [row[1:] if i == 0 else row for i, row in enumerate(table)]  # the first row starts with the grid
    assert [float(row[0]) for row in table] == [0.05, 0.1, 0.35, 0.5, 0.9]
    assert [int(row[1]) for row in table] == [num_kept(q, 126) for q in (0.05, 0.1, 0.35, 0.5, 0.9)]
    assert [len(row) for row in table] == [11, 9, 9, 9, 9]  # the spreads only on the first row
    assert "by retention: 0 of 6, 0 of 12, 0 of 44, 0 of 63, 0 of 113" in r.stdout


def test_bench_times_the_retentions_interleaved():
    """The bench takes one call of each retention per round, the order rotated every round, so a slow spell
    of the host is shared by all retentions (max/min compares retentions, not moments)."""
    from selector.bench.selector import _interleaved

    calls: list[int] = []
    times = _interleaved(torch.device("cpu"), [lambda j=j: calls.append(j) for j in range(3)], 4, warmup=2)
    assert calls[:6] == [0, 0, 1, 1, 2, 2]  # warm-up of each
    assert calls[6:] == [0, 1, 2, 1, 2, 0, 2, 0, 1, 0, 1, 2]
    assert [len(t) for t in times] == [4, 4, 4] and all(v >= 0 for t in times for v in t)


def test_compare_bench_prints_one_column_per_grid_and_retention():
    """`python -m selector.bench.compare` with two grids and two retentions: a header naming the four columns, one
    row per method named with four times; a retention that is not a number is refused by name."""
    root = Path(__file__).resolve().parents[1]
    cmd = [sys.executable, "-m", "selector.bench.compare", "--device", "cpu", "--grid", "2x4x4x8", "--grid", "3x3x3x8",
           "--retention", "0.25,0.5", "--repeats", "1", "--methods", "entropy_select,evs,llava_scissor"]
    bad = subprocess.run(cmd[:-6] + ["--retention", "half"], capture_output=True, text=True, timeout=300, cwd=root)
    assert bad.returncode == 2 and "--retention" in bad.stderr and "'half'" in bad.stderr
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=300, cwd=root)
    assert r.returncode == 0, r.stderr[-2000:]
    rows = [line.strip("|").split("|") for line in r.stdout.splitlines() if line.startswith("| ")]
    head = [c.strip() for c in rows[0]]
    assert head == ["method", "2×4×4×8 r=0.25 ms", "2×4×4×8 r=0.5 ms", "3×3×3×8 r=0.25 ms", "3×3×3×8 r=0.5 ms"]
    body = {row[0].strip(): [float(c) for c in row[1:]] for row in rows[1:] if "---" not in row[0]}
    assert sorted(body) == ["entropy_select", "evs", "llava_scissor"]
    assert all(len(v) == 4 and all(t > 0 for t in v) for v in body.values())
