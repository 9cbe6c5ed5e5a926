"""Settings in one place (selector/settings.py): every ENTROPY_SELECT_* variable the code names is a field of
`Settings`, read from the environment when first asked for (never at import), refused with its name when it holds
a value the setting does not take, and listed with its default in docs/architecture.md."""

from __future__ import annotations

import ast
import re
import subprocess
import sys

import pytest
from conftest import ROOT

from selector import settings
from selector.settings import Settings, SettingsError


def _named_in_code() -> set[str]:
    names = set()
    for path in [*(ROOT / "selector").rglob("*.py"), ROOT / "app.py"]:
        names |= set(re.findall(r"ENTROPY_SELECT_[A-Z_]+[A-Z]", path.read_text()))
    return names


def test_every_variable_the_code_names_is_a_setting_with_a_documented_default():
    listed = {name for name, _, _ in settings.VARIABLES}
    assert len(listed) == len(settings.VARIABLES) == len(Settings.__dataclass_fields__)
    assert _named_in_code() <= listed, _named_in_code() - listed
    doc = (ROOT / "docs" / "architecture.md").read_text()
    for name, default, meaning in settings.VARIABLES:
        row = f"| `{name}` | {f'`{default}`' if default else 'unset'} | {meaning} |"
        assert row in doc, row


def test_only_the_settings_module_reads_the_environment_for_them():
    for path in (ROOT / "selector").rglob("*.py"):
        if path.name == "settings.py" and path.parent.name == "selector":
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr in ("get", "getenv"):
                args = [a.value for a in node.args if isinstance(a, ast.Constant) and isinstance(a.value, str)]
                assert not any(a.startswith("ENTROPY_SELECT_") for a in args), f"{path}: reads {args}"
            if isinstance(node, ast.Subscript) and isinstance(node.slice, ast.Constant):
                assert not str(node.slice.value).startswith("ENTROPY_SELECT_"), f"{path}: reads {node.slice.value}"


def test_values_are_parsed_and_a_refused_one_names_its_variable():
    s = Settings.from_env({"ENTROPY_SELECT_QUEUE": "7", "ENTROPY_SELECT_TIME_LIMIT": "2.5",
                           "ENTROPY_SELECT_TRITON": "0", "ENTROPY_SELECT_STRIP_COLS": "",
                           "ENTROPY_SELECT_MODEL_ALLOWLIST": "a/b, c/d/ ,", "ENTROPY_SELECT_PREFILL": " Graph "})
    assert (s.queue, s.time_limit, s.triton, s.strip_cols, s.prefill) == (7, 2.5, False, None, "graph")
    assert s.extra_models == frozenset({"a/b", "c/d"}) and s.warm  # the app warms unless told not to
    assert not Settings().warm and Settings().encoder == "dinov2-s"  # settings made in code: no warm-up
    assert not Settings.from_env({"SPACES_ZERO_GPU": "true"}).warm
    for name, bad, says in (("QUEUE", "many", "an int >= 1"), ("MAX_DECODES", "0", "an int >= 1"),
                            ("TIME_LIMIT", "-1", "a number > 0"), ("TRITON", "maybe", "1 or 0"),
                            ("PREFILL", "fast", "auto, graph, compiled or eager"), ("ENCODER", " ", "a non-empty")):
        with pytest.raises(SettingsError, match=f"ENTROPY_SELECT_{name} must be {re.escape(says)}.*{re.escape(repr(bad))}"):
            Settings.from_env({f"ENTROPY_SELECT_{name}": bad})


def test_the_environment_is_read_when_first_asked_for_not_at_import():
    code = ("import os, selector, selector.video, selector.limits, selector.encoders, selector.app.service, "
            "selector.app.ui, selector.vlm, selector.eval.synthetic\n"
            "from selector import settings\n"
            "assert settings._current is None, 'read at import'\n"
            "os.environ['ENTROPY_SELECT_MAX_SIDE'] = '320'\n"
            "os.environ['ENTROPY_SELECT_ENCODER'] = 'efficientnet-lite0'\n"
            "from selector.video import MAX_SIDE\n"
            "from selector.app.service import Params, Service\n"
            "print(MAX_SIDE, Params().encoder, Service().max_frames)")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=300,
                       env={**__import__("os").environ, "ENTROPY_SELECT_MAX_FRAMES": "12"})
    assert r.returncode == 0, r.stderr[-2000:]
    assert r.stdout.split() == ["320", "efficientnet-lite0", "12"]


def test_each_app_builds_its_own_service():
    from selector.app.ui import Explorer

    a, b = Explorer(settings=Settings()), Explorer(settings=Settings())
    assert a.service is not b.service and a.service.features is not b.service.features
