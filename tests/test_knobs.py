"""The knob table: every selector knob declared once, and everything a person sets generated from it."""

from __future__ import annotations

import shutil
import subprocess
import sys

import pytest
from conftest import ROOT

from selector import SelectorConfig, SelectorError
from selector.config import knobs

CHECK = r"""
import json, subprocess, sys
from selector import SelectorConfig
from selector.config import knobs
from selector.app.service import Params

assert knobs()[-1].name == "extra_knob" and SelectorConfig().extra_knob == 0.25
p = Params(extra_knob=0.5, encoder="efficientnet-lite0")
assert p.config().extra_knob == 0.5 and Params().extra_knob == 0.25
import app
api = app.demo.get_api_info()["named_endpoints"]
out = {name: [q["parameter_name"] for q in api[name]["parameters"]] for name in ("/analyze", "/ask")}
E = app.demo.explorer
slider = E.c["extra_knob"]
cli = subprocess.run([sys.executable, "-m", "selector", "--help"], capture_output=True, text=True).stdout
print(json.dumps({"api": out, "label": slider.label, "kind": type(slider).__name__, "maximum": slider.maximum,
                  "ui_fields": list(E.ui_fields), "cli": "--extra-knob" in cli and "a knob added by a test" in cli}))
"""


def test_adding_a_knob_is_one_declaration(tmp_path):
    """A copy of the project with one more field in SelectorConfig, and no other edit: the knob has its slider on
    the page, its parameter on /analyze and /ask (after the existing ones, whose order clients rely on), its CLI
    flag, its field in the service's Params, and its validation."""
    for name in ("selector", "viz", "assets"):
        shutil.copytree(ROOT / name, tmp_path / name)
    shutil.copy(ROOT / "app.py", tmp_path / "app.py")
    cfg = tmp_path / "selector" / "config.py"
    text = cfg.read_text()
    anchor = "\n    def __post_init__(self) -> None:"
    assert text.count(anchor) == 1
    cfg.write_text(text.replace(anchor, '\n    extra_knob: float = knob(0.25, "float", "Extra knob (test)", "a knob added '
                                        'by a test", low=0.0, high=1.0, step=0.05)\n' + anchor, 1))
    r = subprocess.run([sys.executable, "-c", CHECK], cwd=tmp_path, capture_output=True, text=True, timeout=300,
                       env={**__import__("os").environ, "PYTHONPATH": str(tmp_path)})
    assert r.returncode == 0, r.stderr[-3000:]
    got = __import__("json").loads(r.stdout.strip().splitlines()[-1])
    before = ["video", "retention", "alpha", "tau", "window", "temporal_window", "grid", "num_frames", "encoder",
              "past_window", "rho", "grid_fusion", "stretch", "q", "tau_alloc", "min_tokens", "max_tokens",
              "invert_entropy"]
    assert got["api"]["/analyze"] == [*before, "extra_knob"]
    assert got["api"]["/ask"][-1] == "extra_knob" and got["api"]["/ask"][:3] == ["video", "question", "retention"]
    assert got["label"] == "Extra knob (test)" and got["kind"] == "Slider" and got["maximum"] == 1.0
    assert "extra_knob" in got["ui_fields"] and got["cli"]


def test_every_knob_is_declared_with_what_a_person_needs():
    ks = knobs()
    assert [k.name for k in ks] == [f for f in SelectorConfig.__dataclass_fields__]
    for k in ks:
        assert k.label and k.help and k.kind in ("float", "int", "bool")
        assert k.ui in ("slider", "number", "checkbox")
        if k.ui == "slider":
            assert k.step is not None and (k.ui_high is not None or k.high < float("inf"))
        assert getattr(SelectorConfig(), k.name) == k.default


@pytest.mark.parametrize("kw,msg", [({"window": 4}, "window must be odd"), ({"grid": 0}, "grid must be >= 1"),
                                    ({"alpha": 1.5}, r"alpha must be in \[0.0, 1.0\]"),
                                    ({"q": 0.0}, r"q must be in \(0.0, 1.0\]"),
                                    ({"grid_fusion": 1}, "grid_fusion must be a bool"),
                                    ({"max_tokens": 0}, "max_tokens must be >= 1"),
                                    ({"min_tokens": 2.5}, "min_tokens must be an int")])
def test_validation_is_generated_from_the_table(kw, msg):
    with pytest.raises(SelectorError, match=msg):
        SelectorConfig(**kw)
