"""The lmms-eval plugin: the entry point, the synthetic task's data, the models' arguments, and real lmms-eval
runs, in one process and in two processes started by `accelerate launch` (CPU, gloo)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from importlib import metadata
from pathlib import Path

import numpy as np
import pytest
from conftest import ROOT, SCRATCH, require_tool

from selector import settings
from selector.bench.models import build
from selector.eval import TASKS_PATH, synthetic
from selector.video import read_clip

BIN = Path(sys.executable).parent
LIMIT = 8


# --- packaging -------------------------------------------------------------------------------------------------

def test_tasks_path_command_prints_the_folder_with_the_task_yaml(tmp_path):
    out = subprocess.run([sys.executable, "-m", "selector.eval", "tasks-path"], capture_output=True, text=True,
                         cwd=tmp_path, check=True).stdout.strip()
    assert Path(out) == TASKS_PATH
    yaml = Path(out) / "entropy_select_synthetic" / "entropy_select_synthetic.yaml"
    assert "task: entropy_select_synthetic" in yaml.read_text()


def test_entry_point_registers_one_model_per_family():
    from lmms_eval.models import get_model, list_available_models

    from selector.eval.models import EntropySelectLlavaOneVision, EntropySelectQwen3VL, EntropySelectQwen25VL
    from selector.vlm import FAMILIES

    names = list_available_models()
    assert {f"entropy_select_{t}" for t in FAMILIES} <= set(names) and "entropy_select_qwen3_vl" in names
    assert get_model("entropy_select_llava_onevision") is EntropySelectLlavaOneVision
    assert get_model("entropy_select_qwen2_5_vl") is EntropySelectQwen25VL
    assert get_model("entropy_select_qwen3_vl") is EntropySelectQwen3VL and EntropySelectQwen3VL.family == "qwen3_vl"
    assert not EntropySelectQwen25VL.is_simple  # a chat model: it reads the task's messages


def test_entry_point_works_whatever_is_imported_first():
    """lmms-eval calls the entry point while its registry is built: the manifest module must not import
    lmms-eval itself (a partly imported module would drop the models)."""
    code = ("import selector.eval.manifest, selector.eval.models\nimport lmms_eval.models as m\n"
            "print(sorted(x for x in m.list_available_models() if x.startswith('entropy_select')))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert ("['entropy_select_llava_onevision', 'entropy_select_qwen2_5_vl', 'entropy_select_qwen3_vl', "
            "'entropy_select_qwen3_vl_moe']") in out


def test_the_app_requirements_do_not_pull_lmms_eval_and_the_eval_extra_does():
    reqs = [line.split("#")[0].strip().lower() for line in (ROOT / "requirements.txt").read_text().splitlines()]
    assert not any(r.startswith(("lmms-eval", "lmms_eval", "accelerate")) for r in reqs)
    extra = [r for r in metadata.requires("entropy-select-explorer") or [] if 'extra == "eval"' in r]
    assert any(r.startswith("lmms-eval") for r in extra), extra


def test_installed_pyav_is_one_lmms_eval_accepts_and_it_decodes():
    """The app pins the PyAV that lmms-eval's `av<16` admits; the video reader is tested on it (the PyAV path
    forced here, decord being the first choice elsewhere)."""
    from packaging.requirements import Requirement

    av_req = next(Requirement(r) for r in metadata.requires("lmms-eval") or [] if r.startswith("av"))
    assert av_req.specifier.contains(metadata.version("av")), (av_req, metadata.version("av"))
    pinned = next(line for line in (ROOT / "requirements.txt").read_text().splitlines() if line.startswith("av=="))
    assert av_req.specifier.contains(pinned.split("==")[1])
    code = ("import sys; sys.modules['decord'] = None  # decord hidden: the PyAV path\n"
            "from selector.video import read_clip\n"
            f"c = read_clip({str(ROOT / 'assets' / 'bigbuckbunny.mp4')!r}, 6)\nprint(c.backend, c.frames.shape)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.startswith("pyav (6,"), out


# --- the synthetic task's data -------------------------------------------------------------------------------

def test_clips_are_deterministic_and_differ_between_indices():
    a, doc_a = synthetic.make_clip(3)
    b, doc_b = synthetic.make_clip(3)
    c, _ = synthetic.make_clip(4)
    assert np.array_equal(a, b) and doc_a == doc_b
    assert not np.array_equal(a, c)
    assert a.shape == (synthetic.FRAMES, synthetic.SIZE, synthetic.SIZE, 3) and a.dtype == np.uint8


def _shapes(frame: np.ndarray) -> list[tuple[str, tuple[float, float]]]:
    """(colour name, centre) of each coloured square of a decoded frame."""
    from scipy import ndimage

    out = []
    f = frame.astype(int)
    for name, rgb in synthetic.COLOURS.items():
        mask = (np.abs(f - np.array(rgb)).max(-1) < 45)
        labels, n = ndimage.label(mask)
        for i in range(1, n + 1):
            ys, xs = np.nonzero(labels == i)
            if len(ys) > 100:  # a square, not codec ringing
                out.append((name, (ys.mean(), xs.mean())))
    return out


def test_written_clips_show_the_answers_they_state(tmp_path, monkeypatch):
    """Decode every clip as the model will and check the answer from the pixels: the count of squares, the
    colour of the one that moved."""
    monkeypatch.setenv("ENTROPY_SELECT_EVAL_DATA", str(tmp_path))
    settings.reload()
    docs = synthetic.docs()
    assert len(docs) == synthetic.CLIPS and len({d["id"] for d in docs}) == synthetic.CLIPS
    assert {d["kind"] for d in docs} == {"colour", "count"}
    letters = "ABCD"
    for doc in docs:
        frames = read_clip(doc["video"], synthetic.FRAMES).frames
        first, last = _shapes(frames[0]), _shapes(frames[-1])
        if doc["kind"] == "count":
            assert len(first) == int(doc["options"][letters.index(doc["answer"])]), doc
        else:
            moved = [n for n, (y, x) in first
                     if not any(m == n and abs(y - y2) + abs(x - x2) < 3 for m, (y2, x2) in last)]
            assert moved == [doc["options"][letters.index(doc["answer"])]], (doc, first, last)
    again = synthetic.docs()  # second use: the files are reused, not rewritten
    assert [d["video"] for d in again] == [d["video"] for d in docs]
    assert json.loads((synthetic.data_dir() / "docs.json").read_text())[0]["id"] == "synthetic-000"


@pytest.mark.parametrize("text,letter", [("B", "B"), ("c.", "C"), ("(D) yellow", "D"), ("Answer: A", "A"),
                                         ("a red square", None), ("", None), ("E", None)])
def test_parse_letter(text, letter):
    assert synthetic.parse_letter(text) == letter


# --- the models' arguments --------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory):
    base = tmp_path_factory.mktemp("eval-models")
    return {"llava_onevision": build(base / "llava"), "qwen2_5_vl": build(base / "qwen", family="qwen2_5_vl"),
            "qwen3_vl": build(base / "qwen3", family="qwen3_vl")}


def _model(cls_name: str, **kw):
    from selector.eval import models

    return getattr(models, cls_name)(**kw)


@pytest.mark.parametrize("kw,message", [
    ({"method": "nope"}, "unknown method 'nope'"),
    ({"retention": 0}, "retention must be in (0, 1]"),
    ({"retention": 1.5}, "retention must be in (0, 1]"),
    ({"num_frames": 0}, "num_frames must be a positive int"),
    ({"alpha": 2.0}, "alpha must be in"),
    ({"window": 4}, "window must be odd"),
    ({"bogus": 1}, "unknown model_args bogus"),
    ({"method": "random", "alpha": 0.3}, "apply to method=entropy_select"),
])
def test_bad_model_args_are_refused_by_name(checkpoints, kw, message):
    with pytest.raises(ValueError, match=message.replace("(", r"\(").replace(")", r"\)").replace("]", r"\]")):
        _model("EntropySelectLlavaOneVision", pretrained=str(checkpoints["llava_onevision"]), device="cpu", **kw)


def test_a_checkpoint_of_the_other_family_is_refused(checkpoints):
    with pytest.raises(ValueError, match="needs a qwen2_5_vl checkpoint.*use entropy_select_llava_onevision"):
        _model("EntropySelectQwen25VL", pretrained=str(checkpoints["llava_onevision"]), device="cpu")


def test_knobs_reach_the_selector_and_records_count_what_was_kept(checkpoints, tmp_path, monkeypatch):
    monkeypatch.setenv("ENTROPY_SELECT_EVAL_DATA", str(tmp_path))
    settings.reload()
    doc = synthetic.docs(limit=1)[0]
    lm = _model("EntropySelectLlavaOneVision", pretrained=str(checkpoints["llava_onevision"]), device="cpu",
                retention=0.25, alpha=1, max_tokens=0, window=3, num_frames=8, max_new_tokens=3)
    assert lm.selector_config.alpha == 1.0 and lm.selector_config.max_tokens is None
    assert lm.selector_config.window == 3
    text, rec = lm.answer(doc["video"], synthetic.prompt(doc), {"max_new_tokens": 50})
    assert isinstance(text, str) and rec.error is None
    assert rec.frames == 8 and rec.output_tokens <= 3  # the model arg caps the task's 50
    grid = rec.full_visual_tokens - 1  # LLaVA-OneVision: the grid plus one newline row
    assert rec.kept_visual_tokens - 1 == int(0.25 * grid) or abs(rec.kept_visual_tokens - 1 - 0.25 * grid) <= 1
    assert rec.input_tokens < rec.full_visual_tokens  # the prompt holds the kept tokens, not all of them
    for f in ("read_ms", "vision_ms", "selection_ms", "prefill_ms", "e2e_ms"):
        assert getattr(rec, f) > 0, f
    assert rec.e2e_ms >= rec.selection_ms + rec.prefill_ms
    # the answer's tokens after the first: their time per token (None for a one-token answer)
    assert (rec.decode_ms_per_token is None) if rec.output_tokens == 1 else rec.decode_ms_per_token > 0
    d = rec.to_dict()
    assert d["method"] == "entropy_select" and d["kept_visual_tokens"] == rec.kept_visual_tokens


def test_an_unreadable_video_gives_an_empty_answer_and_the_error(checkpoints, tmp_path):
    lm = _model("EntropySelectLlavaOneVision", pretrained=str(checkpoints["llava_onevision"]), device="cpu")
    bad = tmp_path / "bad.mp4"
    bad.write_bytes(b"not a video")
    text, rec = lm.answer(str(bad), "What is shown?", {})
    assert text == ""
    assert rec.error is not None and "bad.mp4 is not a video file" in rec.error
    assert rec.to_dict()["error"] == rec.error and rec.kept_visual_tokens is None


def test_images_and_several_videos_are_refused_naming_the_task():
    from selector.eval.models import _video_and_text

    msgs = [{"role": "user", "content": [{"type": "image", "url": "x.png"}, {"type": "text", "text": "q"}]}]
    with pytest.raises(ValueError, match="task mmmu gives an image"):
        _video_and_text(msgs, "mmmu")
    two = [{"role": "user", "content": [{"type": "video", "url": "a.mp4"}, {"type": "video", "url": "b.mp4"}]}]
    with pytest.raises(ValueError, match="task t gives 2 videos"):
        _video_and_text(two, "t")
    ok = [{"role": "system", "content": "be brief"},
          {"role": "user", "content": [{"type": "video", "url": {"url": "a.mp4"}}, {"type": "text", "text": "q?"}]}]
    assert _video_and_text(ok, "t") == ("a.mp4", "q?")


def test_summary_gives_median_and_p90_per_task():
    from selector.eval.models import summarize

    rng = np.random.default_rng(0)
    ms = rng.uniform(1, 50, 37)
    samples = {"a": [{"token_counts": [{"method": "random", "retention": 0.5, "selection_ms": float(v),
                                        "kept_visual_tokens": 10}]} for v in ms],
               "other_model": [{"token_counts": [{"input_tokens": 3}]}]}
    out = summarize(samples)
    assert set(out) == {"a"}
    assert out["a"]["samples"] == 37 and out["a"]["method"] == "random"
    assert out["a"]["selection_ms"]["median"] == pytest.approx(np.median(ms), abs=1e-3)
    assert out["a"]["selection_ms"]["p90"] == pytest.approx(np.percentile(ms, 90), abs=1e-3)
    assert out["a"]["kept_visual_tokens"] == {"median": 10.0, "p90": 10.0}


def test_loglikelihood_requests_get_an_error_naming_the_task(checkpoints):
    from lmms_eval.api.instance import Instance

    lm = _model("EntropySelectLlavaOneVision", pretrained=str(checkpoints["llava_onevision"]), device="cpu")
    req = Instance("loglikelihood", ("ctx", "cont"), 0, metadata={"task": "some_mcq", "doc_id": 0, "repeats": 1})
    with pytest.raises(NotImplementedError, match="some_mcq ask for log-likelihoods"):
        lm.loglikelihood([req])


# --- real lmms-eval runs ----------------------------------------------------------------------------------------

def _env(data: Path) -> dict[str, str]:
    env = dict(os.environ)
    env.update({"ENTROPY_SELECT_EVAL_DATA": str(data), "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1",
                "HF_HOME": str(SCRATCH / "hf-home"), "OMP_NUM_THREADS": "1", "TOKENIZERS_PARALLELISM": "false",
                "WANDB_MODE": "disabled", "MASTER_PORT": str(29500 + os.getpid() % 1000)})
    return env


def _run(launcher: list[str], model: str, checkpoint: Path, out: Path, data: Path) -> tuple[list[dict], dict, str]:
    cmd = [*launcher, "-m", "lmms_eval", "--model", model,
           "--model_args", f"pretrained={checkpoint},retention=0.35", "--tasks", "entropy_select_synthetic",
           "--include_path", str(TASKS_PATH), "--limit", str(LIMIT), "--output_path", str(out), "--log_samples"]
    p = subprocess.run(cmd, capture_output=True, text=True, env=_env(data), cwd=out.parent, timeout=600)
    log = p.stdout + p.stderr
    assert p.returncode == 0, f"{' '.join(cmd)}\n{log[-4000:]}"
    samples = [json.loads(line) for f in out.rglob("*_samples_entropy_select_synthetic.jsonl")
               for line in f.read_text().splitlines()]
    results = [json.loads(f.read_text()) for f in out.rglob("*_results.json")]
    assert len(results) == 1, log[-3000:]
    return samples, results[0], log


FAMILY = {"entropy_select_llava_onevision": "llava_onevision", "entropy_select_qwen2_5_vl": "qwen2_5_vl",
          "entropy_select_qwen3_vl": "qwen3_vl"}


#: the documented command without a hostfile: accelerate starts one process on a CPU
ACCELERATE_CPU = [str(BIN / "accelerate"), "launch", "--num_processes", "2", "--cpu"]


@pytest.fixture(scope="module")
def one_process(checkpoints, tmp_path_factory):
    """The one-process run of each model (samples, results, data folder, log), made once for the launchers' tests:
    LLaVA-OneVision's through `accelerate launch --num_processes 2 --cpu` without a hostfile (one process), the
    others' through `python -m lmms_eval`."""
    runs: dict[str, tuple[list[dict], dict, Path, str]] = {}

    def get(model: str) -> tuple[list[dict], dict, Path, str]:
        if model not in runs:
            tmp = tmp_path_factory.mktemp("one-process")
            launcher = ACCELERATE_CPU if model == "entropy_select_llava_onevision" else [sys.executable]
            one, res, log = _run(launcher, model, checkpoints[FAMILY[model]], tmp / "one", tmp / "data")
            runs[model] = one, res, tmp / "data", log
        return runs[model]
    return get


def _two_processes(model: str, checkpoint: Path, one_process, tmp_path: Path, launcher: list[str],
                   env: dict[str, str]) -> None:
    """Run the task through `launcher` in two processes: the two split the documents, the merged log holds each
    once, and the answers, selections and summaries equal the one-process run's."""
    one, res_one, data, _ = one_process(model)
    os.environ.update(env)
    try:
        two, res_two, log = _run(launcher, model, checkpoint, tmp_path / "two", data)
    finally:
        for k in env:
            os.environ.pop(k)
    assert "process 1 of 2" in log and "process 2 of 2" in log
    # every document once, in the merged log
    assert sorted(s["doc_id"] for s in one) == list(range(LIMIT))
    assert sorted(s["doc_id"] for s in two) == list(range(LIMIT))
    ranks = [s["token_counts"][0]["rank"] for s in two]
    assert sorted(ranks) == [0] * (LIMIT // 2) + [1] * (LIMIT // 2)  # split evenly between the two
    assert {s["token_counts"][0]["rank"] for s in one} == {0}
    by_doc = {s["doc_id"]: s for s in one}
    for s in two:  # the same answers and the same selections
        ref = by_doc[s["doc_id"]]
        assert s["filtered_resps"] == ref["filtered_resps"], s["doc_id"]
        assert s["token_counts"][0]["kept_visual_tokens"] == ref["token_counts"][0]["kept_visual_tokens"]
        assert s["target"] == ref["target"]
    for res, samples in ((res_one, one), (res_two, two)):
        assert res["n-samples"]["entropy_select_synthetic"]["effective"] == LIMIT
        acc = res["results"]["entropy_select_synthetic"]["accuracy,none"]
        assert acc == pytest.approx(np.mean([s["accuracy"] for s in samples]))
        summary = res["efficiency"]["entropy_select"]["entropy_select_synthetic"]
        assert summary["samples"] == LIMIT and summary["errors"] == 0 and summary["retention"] == 0.35
        kept = [s["token_counts"][0]["kept_visual_tokens"] for s in samples]
        assert summary["kept_visual_tokens"]["median"] == pytest.approx(np.median(kept))
        e2e = [s["token_counts"][0]["e2e_ms"] for s in samples]
        assert summary["e2e_ms"]["p90"] == pytest.approx(np.percentile(e2e, 90), abs=0.01)
        for field in ("selection_ms", "prefill_ms"):
            assert summary[field]["median"] > 0
        per = [s["token_counts"][0]["decode_ms_per_token"] for s in samples]
        per = [p for p in per if p is not None]
        if per:  # answers of more than one token: their decode time per token, summarised like the rest
            assert summary["decode_ms_per_token"]["median"] == pytest.approx(np.median(per), abs=0.01)


@pytest.mark.slow
@pytest.mark.parametrize("model", list(FAMILY))
def test_accelerate_cpu_launch_through_mpirun_splits_the_samples(model, checkpoints, one_process, tmp_path):
    """The issue's command, `accelerate launch --num_processes 2 --cpu`, with the hostfile through which accelerate
    starts several CPU processes (mpirun; gloo between them)."""
    require_tool("mpirun")
    hostfile = tmp_path / "hostfile"
    hostfile.write_text("localhost slots=2\n")
    launcher = [str(BIN / "accelerate"), "launch", "--num_processes", "2", "--cpu", "--mpirun_hostfile", str(hostfile)]
    # Open MPI refuses to run as root unless told to (CI runs as root)
    env = {"OMPI_ALLOW_RUN_AS_ROOT": "1", "OMPI_ALLOW_RUN_AS_ROOT_CONFIRM": "1"} if os.geteuid() == 0 else {}
    _two_processes(model, checkpoints[FAMILY[model]], one_process, tmp_path, launcher, env)


@pytest.mark.slow
def test_two_processes_split_the_samples_and_answer_as_one_process(checkpoints, one_process, tmp_path):
    """Without MPI: torchrun's launcher (`--multi_gpu`) with ACCELERATE_USE_CPU gives two gloo processes on the CPU
    (the launcher's route is the same for both models; the mpirun test runs both)."""
    model = "entropy_select_llava_onevision"
    launcher = [str(BIN / "accelerate"), "launch", "--multi_gpu", "--num_processes", "2"]
    _two_processes(model, checkpoints[FAMILY[model]], one_process, tmp_path, launcher, {"ACCELERATE_USE_CPU": "true"})


@pytest.mark.slow
def test_accelerate_cpu_launch_runs_and_says_it_is_one_process(one_process):
    """The command without a hostfile: accelerate runs one process there; the run completes and says how to get
    two."""
    samples, res, _, log = one_process("entropy_select_llava_onevision")
    assert sorted(s["doc_id"] for s in samples) == list(range(LIMIT))
    assert {s["token_counts"][0]["rank"] for s in samples} == {0}
    assert "starts one process" in log and "--mpirun_hostfile" in log and "--multi_gpu --num_processes N" in log
    assert res["efficiency"]["entropy_select"]["entropy_select_synthetic"]["samples"] == LIMIT


def test_summary_command_prints_the_table(tmp_path):
    res = {"efficiency": {"entropy_select": {"t": {"samples": 2, "errors": 0, "method": "entropy_select",
                                                   "retention": 0.35, "e2e_ms": {"median": 5.0, "p90": 7.5}}}}}
    f = tmp_path / "r.json"
    f.write_text(json.dumps(res))
    out = subprocess.run([sys.executable, "-m", "selector.eval", "summary", str(f)], capture_output=True, text=True,
                         check=True).stdout
    assert "| t | entropy_select | 0.35 | 2 | 0 |" in out and "5 / 7.5" in out
    empty = tmp_path / "e.json"
    empty.write_text("{}")
    p = subprocess.run([sys.executable, "-m", "selector.eval", "summary", str(empty)], capture_output=True, text=True)
    assert p.returncode == 1 and "--log_samples" in p.stderr


@pytest.mark.slow
def test_docs_smoke_run_works_as_written(tmp_path):
    """The offline smoke run of docs/lmms-eval.md (its three commands, /tmp/ replaced by a test folder, `python` by
    this interpreter) makes a checkpoint, runs lmms-eval and prints the timing table."""
    import re

    text = (ROOT / "docs" / "lmms-eval.md").read_text()
    block = next(b for b in re.findall(r"```bash\n(.*?)```", text, re.S) if "entropy_select_synthetic" in b)
    script = block.replace("/tmp/", f"{tmp_path}/").replace("python -m", f"{sys.executable} -m")
    p = subprocess.run(["bash", "-euo", "pipefail", "-c", script], capture_output=True, text=True, cwd=tmp_path,
                       env=_env(tmp_path / "data"), timeout=600)
    assert p.returncode == 0, p.stderr[-3000:]
    rows = [line for line in p.stdout.splitlines() if line.startswith("| entropy_select_synthetic |")]
    assert len(rows) == 1 and "| entropy_select | 0.35 | 8 | 0 |" in rows[0], p.stdout
