"""Mutation testing of the selector core or of the compared methods, with mutmut (slow: not in CI).

python tools/mutation.py method   — mutants of selector/method/ (and the other selector/ lines the fast method
                                    tests run) against tests/test_method_formulas.py, test_stages.py and
                                    test_method_contracts.py
python tools/mutation.py compare  — mutants of selector/compare/ against tests/test_compare.py (less its
                                    command-line runs and the DINOv2 reference search, which take seconds each)

The tracked files are copied to a scratch folder whose pyproject.toml names that selection (mutmut reads only its
configuration file), `mutmut run` runs there, and the share of mutants killed is printed per folder; the survivors
are listed with `mutmut results` and shown with `mutmut show NAME` in the printed folder. Needs `pip install mutmut`.
"""

from __future__ import annotations

import argparse
import collections
import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
# (test selection, files to mutate) replacing pyproject.toml's; None keeps what pyproject.toml says (the method run)
SELECTIONS: dict[str, tuple[str | None, str | None]] = {
    "method": (None, None),
    "compare": ('["tests/test_compare.py", "-k", "not cli and not dinov2"]', '["selector/compare/*"]'),
}


def configure(pyproject: str, selection: str | None, only: str | None) -> str:
    """pyproject.toml's text with [tool.mutmut]'s test selection (and files to mutate) replaced."""
    if selection is None:
        return pyproject
    text, n = re.subn(r"^pytest_add_cli_args_test_selection = .*$", f"pytest_add_cli_args_test_selection = {selection}",
                      pyproject, count=1, flags=re.M)
    if n != 1:
        raise SystemExit("pyproject.toml has no [tool.mutmut] pytest_add_cli_args_test_selection line")
    text = re.sub(r"^only_mutate = .*\n", "", text, flags=re.M)
    if only:
        text = text.replace(f"pytest_add_cli_args_test_selection = {selection}",
                            f"pytest_add_cli_args_test_selection = {selection}\nonly_mutate = {only}", 1)
    return text


def tally(results: str) -> dict[str, collections.Counter]:
    """Mutants by folder (selector.method, selector.compare, ...) and status, from `mutmut results --all true`."""
    out: dict[str, collections.Counter] = collections.defaultdict(collections.Counter)
    for line in results.splitlines():
        name, sep, status = line.strip().rpartition(": ")
        if sep and "__mutmut_" in name:
            out[".".join(name.split(".")[:2])][status] += 1
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python tools/mutation.py", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("target", choices=sorted(SELECTIONS))
    a = ap.parse_args(argv)
    mutmut = shutil.which("mutmut") or str(Path(sys.executable).with_name("mutmut"))
    if not Path(mutmut).exists():
        ap.error("mutmut is not installed: pip install mutmut")
    work = Path(tempfile.mkdtemp(prefix=f"mutation-{a.target}-"))
    files = subprocess.run(["git", "ls-files", "-z"], cwd=ROOT, capture_output=True, check=True).stdout.split(b"\0")
    for f in filter(None, files):
        src = ROOT / f.decode()
        if src.is_file():
            (work / f.decode()).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, work / f.decode())
    selection, only = SELECTIONS[a.target]
    pyproject = work / "pyproject.toml"
    pyproject.write_text(configure(pyproject.read_text(), selection, only))
    env = {**os.environ, "ENTROPY_SELECT_TEST_TMP": str(work / "test-tmp"), "OMP_NUM_THREADS": "1"}
    print(f"mutmut run in {work}", flush=True)
    subprocess.run([mutmut, "run"], cwd=work, env=env, check=False)
    results = subprocess.run([mutmut, "results", "--all", "true"], cwd=work, env=env, capture_output=True,
                             text=True).stdout
    for folder, counts in sorted(tally(results).items()):
        done = sum(counts.values())
        print(f"{folder}: {counts['killed']} of {done} killed ({100 * counts['killed'] / max(1, done):.1f} %); "
              + ", ".join(f"{v} {k}" for k, v in counts.most_common() if k != "killed"))
    print(f"survivors: cd {work} && mutmut results; mutmut show NAME")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
