"""The package's shape: no import cycles between modules, the selector core imports torch and the stdlib only,
the public entry points stay where users and scripts find them."""

from __future__ import annotations

import ast
import os
import subprocess
import sys
from pathlib import Path

from conftest import ROOT

PKG = ROOT / "selector"


def _module(path: Path) -> str:
    rel = path.relative_to(ROOT).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _imports(path: Path) -> set[str]:
    """Project modules a file imports at module level or inside functions (relative imports resolved)."""
    mod = _module(path)
    package = mod if path.name == "__init__.py" else mod.rsplit(".", 1)[0]
    out = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom):
            base = package.split(".")
            if node.level:
                base = base[: len(base) - node.level + 1]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            if not target.startswith("selector"):
                continue
            for alias in node.names:  # `from . import maps` names a module
                sub = f"{target}.{alias.name}"
                out.add(sub if (ROOT / Path(*sub.split("."))).with_suffix(".py").exists()
                        or (ROOT / Path(*sub.split("."))).is_dir() else target)
        elif isinstance(node, ast.Import):
            out |= {a.name for a in node.names if a.name.startswith("selector")}
    return out


def test_no_import_cycles_between_modules():
    graph = {_module(p): _imports(p) - {_module(p)} for p in PKG.rglob("*.py")}
    # a package's __init__ runs before its modules: an import of selector.x.y also imports selector.x
    seen: dict[str, int] = {}
    stack: list[str] = []

    def visit(m: str) -> None:
        seen[m] = 1
        stack.append(m)
        for n in sorted(graph.get(m, ())):
            if n not in graph:
                continue
            if seen.get(n) == 1:
                raise AssertionError("import cycle: " + " → ".join(stack[stack.index(n):] + [n]))
            if n not in seen:
                visit(n)
        stack.pop()
        seen[m] = 2

    for m in sorted(graph):
        if m not in seen:
            visit(m)
    assert "selector.method.pipeline" in graph and "selector.backends.graphs" in graph  # the walk saw the layers


def test_the_selector_core_imports_torch_and_the_stdlib_only():
    # torch itself imports numpy; nothing else may come in
    code = ("import sys; import selector, selector.method.select, selector.backends.cpu, selector.backends.graphs; "
            "bad = [m for m in ('gradio', 'decord', 'av', 'transformers', 'PIL', 'matplotlib', 'plotly', "
            "'triton') if sys.modules.get(m) is not None]; print(bad); sys.exit(1 if bad else 0)")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd="/")
    assert r.returncode == 0, r.stdout + r.stderr[-2000:]


def test_public_entry_points_stay():
    code = """
from selector import select_tokens, SelectorConfig, Selection, SelectorError
from selector.video import read_frames
from selector.encoders import load_encoder
from selector.vlm import load_vlm
print('ok')
"""
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd="/")
    assert r.stdout.strip() == "ok", r.stderr[-2000:]
    for mod in ("selector", "selector.bench", "selector.bench_vlm"):
        r = subprocess.run([sys.executable, "-m", mod, "--help"], capture_output=True, text=True, cwd="/",
                           timeout=120)
        assert r.returncode == 0 and "usage: python -m " + mod in r.stdout, (mod, r.stderr[-2000:])


def test_readme_python_snippets_run_as_written(tmp_path):
    """The README's Python snippets that need neither a server nor a hub model run from another folder."""
    import re

    text = (ROOT / "README.md").read_text()
    blocks = re.findall(r"```python\n(.*?)```", text, re.S)
    runnable = [b for b in blocks if "gradio_client" not in b and "load_vlm" not in b]
    assert len(runnable) >= 2, "the README lost its Python snippets"
    assert not (tmp_path / "assets").exists()  # the snippets find the bundled clip through the package
    for code in runnable:
        r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=tmp_path, timeout=300,
                           env={**__import__("os").environ, "PYTHONPATH": ""})
        assert r.returncode == 0, f"{code}\n{r.stderr[-2000:]}"
        assert r.stdout.strip(), f"the snippet prints nothing:\n{code}"


def test_the_method_imports_nothing_from_its_backends():
    """The backends import the method and register their objects; no import runs back up from the method."""
    found = {_module(p): {m for m in _imports(p) if m.startswith("selector.backends")}
             for p in (PKG / "method").rglob("*.py")}
    assert "selector.method.pipeline" in found and not any(found.values()), found


def test_units_stay_small_enough_to_read():
    """No function over 80 lines outside the tests, no file of the web app over 400 lines, a README of ≤ 170 lines."""
    long = []
    for path in [*PKG.rglob("*.py"), *(ROOT / "viz").rglob("*.py"), *(ROOT / "tools").rglob("*.py"), ROOT / "app.py"]:
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and node.end_lineno - node.lineno >= 80:
                long.append(f"{path.relative_to(ROOT)}:{node.lineno} {node.name} ({node.end_lineno - node.lineno + 1})")
    assert not long, long
    big = {p.name: n for p in (PKG / "app").glob("*.py") if (n := len(p.read_text().splitlines())) > 400}
    assert not big, big
    assert len((ROOT / "README.md").read_text().splitlines()) <= 170


def test_a_cpu_only_torch_collects_every_module():
    """With PyTorch's CPU wheel there is no Triton: --doctest-modules skips the kernels' module with the reason instead
    of aborting the run; under CI (whose PyTorch has Triton) a missing Triton fails."""
    code = ("import sys; sys.modules['triton'] = None; import pytest; "
            "sys.exit(pytest.main(['-q', '-p', 'no:cacheprovider', '-rs', 'selector/backends/triton_kernels.py', "
            "'selector/backends/triton.py', 'selector/method/allocate.py']))")
    env = {k: v for k, v in __import__("os").environ.items() if k != "CI"}
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, env=env, timeout=300)
    assert r.returncode == 0 and "triton is not installed (a CPU-only PyTorch)" in r.stdout, r.stdout[-2000:]
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT,
                       env={**env, "CI": "true"}, timeout=300)
    assert r.returncode != 0 and "ImportError" in r.stdout, r.stdout[-2000:]


def test_ci_runs_reproduce():
    """Under CI hypothesis draws the same examples every run and prints how to replay a failure; the CPU strip
    width is pinned instead of timed per process."""
    import hypothesis
    from conftest import IN_CI

    assert hypothesis.settings.default.derandomize == IN_CI and hypothesis.settings.default.print_blob
    assert os.environ.get("ENTROPY_SELECT_STRIP_COLS") == "9"
