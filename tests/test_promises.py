"""Promises the README and docs make that no other test checks: the hub probe's bound and the local hub cache,
two decodes at once, the time limit between generated tokens, the upload cap, `python app.py --mcp`, the
commands of the docs' benchmark and findings tables."""

from __future__ import annotations

import re
import subprocess
import sys
import threading
import time

import pytest
from conftest import ROOT

from selector import hub, limits, settings


def test_the_hub_probe_answers_within_its_bound_when_the_connection_hangs(monkeypatch):
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.setenv("HF_ENDPOINT", "https://hub.invalid.example")
    monkeypatch.setattr(hub, "_state", {})
    monkeypatch.setattr(hub.socket, "create_connection", lambda *a, **k: time.sleep(30))
    t0 = time.monotonic()
    assert hub.reachable() is False
    assert time.monotonic() - t0 < hub.PROBE_SECONDS + 1.0


def test_a_model_in_the_local_hub_cache_is_available_offline(monkeypatch, tmp_path):
    snap = tmp_path / "models--someone--tiny-model" / "snapshots" / "0123abcd"
    snap.mkdir(parents=True)
    (snap / "config.json").write_text("{}")
    (tmp_path / "models--someone--tiny-model" / "refs").mkdir()
    (tmp_path / "models--someone--tiny-model" / "refs" / "main").write_text("0123abcd")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path))
    import huggingface_hub.constants as c

    monkeypatch.setattr(c, "HF_HUB_CACHE", str(tmp_path))
    assert hub.available("someone/tiny-model") and not hub.available("someone/other-model")


def test_at_most_max_decodes_videos_are_decoded_at_once(monkeypatch):
    monkeypatch.setenv("ENTROPY_SELECT_MAX_DECODES", "2")
    settings.reload()
    monkeypatch.setattr(limits, "_slots", [])
    inside, most = [0], [0]
    lock = threading.Lock()

    def decode() -> None:
        with limits.decode_slot():
            with lock:
                inside[0] += 1
                most[0] = max(most[0], inside[0])
            time.sleep(0.2)
            with lock:
                inside[0] -= 1

    threads = [threading.Thread(target=decode) for _ in range(5)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert most[0] == 2


def test_the_time_limit_stops_an_answer_between_tokens(tmp_path, monkeypatch):
    """A long answer under a short time limit stops at the next token, within a second of the limit."""
    import media

    import selector.vlm as v
    from selector.bench.models import build
    from selector.vlm import load_vlm

    vlm = load_vlm(str(build(tmp_path / "m")), "cpu")
    monkeypatch.setattr(v, "_eos_ids", lambda model, processor: set())  # the answer would run 4000 tokens
    frames = media.pattern(4, 72, 96)
    vlm.answer(frames, "what is in the video", 0.35, max_new_tokens=2)  # warm
    t0 = time.monotonic()
    with pytest.raises(limits.TimeLimitError, match="generating the answer"):
        with limits.time_limit(0.5):
            vlm.answer(frames, "what is in the video", 0.35, max_new_tokens=4000)
    assert time.monotonic() - t0 < 1.5


def test_the_upload_cap_and_the_mcp_flag_reach_gradio(monkeypatch):
    """ENTROPY_SELECT_MAX_UPLOAD becomes gradio's max_file_size; `python app.py --mcp` launches with mcp_server."""
    from selector.app import page, ui

    seen = {}
    monkeypatch.setattr(page.gr.Blocks, "launch", lambda self, *a, **k: seen.update(k))
    monkeypatch.setenv("ENTROPY_SELECT_MAX_UPLOAD", "5mb")
    settings.reload()
    demo = ui.create_demo(settings=settings.current())
    ui.launch(demo, mcp_server=True)
    assert seen["max_file_size"] == "5mb" and seen["mcp_server"] is True
    app = (ROOT / "app.py").read_text()
    assert '"--mcp" in sys.argv[1:]' in app and '{"mcp_server": True}' in app


def test_the_commands_of_the_docs_tables_exist_as_written():
    """Every `python -m ...` or `python tools/...` command a table of docs/ names accepts its options (--help of the
    module, and each option it shows is one the command lists)."""
    text = "\n".join(p.read_text() for p in (ROOT / "docs").glob("*.md"))
    commands = set(re.findall(r"`python (-m [\w.]+|tools/\w+\.py)([^`]*)`", text))
    assert len(commands) >= 8, commands
    helps: dict[str, str] = {}
    for target, args in sorted(commands):
        if target not in helps:
            argv = target.split() if target.startswith("-m") else [str(ROOT / target)]
            if target == "-m lmms_eval":  # its options are those of its `eval` subcommand, the default one
                argv.append("eval")
            r = subprocess.run([sys.executable, *argv, "--help"], capture_output=True, text=True, cwd=ROOT,
                               timeout=300)
            assert r.returncode == 0, (target, r.stderr[-1500:])
            helps[target] = r.stdout
        for opt in re.findall(r"(?<![\w-])(--[a-z][\w-]*)", args):
            assert opt in helps[target], f"`python {target}{args}`: {opt} is not an option of {target}"


def test_a_stream_read_straight_through_stops_at_the_frame_cap(tmp_path, monkeypatch):
    """ENTROPY_SELECT_MAX_DECODED_FRAMES bounds the frames decoded from a stream read straight through (the PyAV
    path): the clip's frames come from the first ones only, and a note of kind "stream_cap" says so."""
    import media

    from selector import video

    path = media.write(tmp_path / "long.mp4", media.pattern(60, 64, 96), fps=10)
    monkeypatch.setenv("ENTROPY_SELECT_MAX_DECODED_FRAMES", "12")
    settings.reload()

    def no_decord(*a, **k):
        raise video._Fallback("decord is not used in this test")

    monkeypatch.setattr(video, "_read_decord", no_decord)
    clip = video.read_clip(path, 4)
    assert [n.kind for n in clip.notes].count("stream_cap") == 1
    assert clip.frames.shape[0] == 4 and float(max(clip.timestamps)) < 12 / 10
    monkeypatch.setenv("ENTROPY_SELECT_MAX_DECODED_FRAMES", "20000")
    settings.reload()
    assert "stream_cap" not in [n.kind for n in video.read_clip(path, 4).notes]


def test_the_lmms_eval_models_defaults_are_the_documented_ones():
    """docs/lmms-eval.md: method entropy_select, retention 1.0 (the stock model), 16 frames, the task's answer
    length, SelectorConfig's knobs; every family's class takes the same defaults."""
    import inspect

    from selector import SelectorConfig
    from selector.eval import models

    doc = (ROOT / "docs" / "lmms-eval.md").read_text()
    for said in ("default `entropy_select`", "`retention` (default 1.0", "`num_frames` (default 16)",
                 "`max_new_tokens` (default: the task's)"):
        assert said in doc, said
    for name in ("EntropySelectLlavaOneVision", "EntropySelectQwen25VL", "EntropySelectQwen3VL"):
        params = inspect.signature(getattr(models, name).__init__).parameters
        got = {k: params[k].default for k in ("method", "retention", "num_frames", "max_new_tokens")}
        assert got == {"method": "entropy_select", "retention": 1.0, "num_frames": 16, "max_new_tokens": None}, name
    assert models._parse_knobs({}, "entropy_select") == SelectorConfig()


def test_the_documented_gpu_command_names_every_file_with_cuda_tests():
    """docs/benchmarks.md's GPU command for machines without the app's dependencies names every test file that holds
    a CUDA test (marked `cuda` directly or through strategies.cuda_only), so it runs them all."""
    text = (ROOT / "docs" / "benchmarks.md").read_text()
    cmd = re.search(r'`python -m pytest -o addopts="" -m cuda ([^`]+)`', text)
    assert cmd, "the GPU command is gone from docs/benchmarks.md"
    named = set(cmd.group(1).split())
    holding = {f"tests/{p.name}" for p in (ROOT / "tests").glob("test_*.py")
               if re.search(r"^\s*@(pytest\.mark\.cuda|cuda_only)\b", p.read_text(), re.M)}
    assert len(holding) >= 4 and named == holding, (named, holding)


def test_the_mutation_tool_names_each_selection_and_counts_by_folder():
    """docs/architecture.md's `python tools/mutation.py method|compare`: the method run keeps pyproject.toml's
    configuration, the compare run replaces its test selection and mutates only selector/compare; the shares are
    counted per folder from `mutmut results --all true`."""
    sys.path.insert(0, str(ROOT / "tools"))
    import mutation

    text = (ROOT / "pyproject.toml").read_text()
    assert mutation.configure(text, *mutation.SELECTIONS["method"]) == text
    compare = mutation.configure(text, *mutation.SELECTIONS["compare"])
    assert 'pytest_add_cli_args_test_selection = ["tests/test_compare.py", "-k", "not cli and not dinov2"]\n' \
           'only_mutate = ["selector/compare/*"]' in compare
    assert compare.count("only_mutate") == 1 and "tests/test_method_formulas.py" not in compare
    results = ("    selector.compare.scissor.x__split__mutmut_1: killed\n"
               "    selector.compare.scissor.xǁ_TokenPairsǁabove__mutmut_2: survived\n"
               "    selector.method.maps.x_entropy_map__mutmut_3: killed\n"
               "    selector.compare.x_compress__mutmut_4: not checked\n")
    counts = mutation.tally(results)
    assert counts["selector.compare"] == {"killed": 1, "survived": 1, "not checked": 1}
    assert counts["selector.method"] == {"killed": 1}
    arch = (ROOT / "docs" / "architecture.md").read_text()
    assert "python tools/mutation.py method" in arch and "python tools/mutation.py compare" in arch
