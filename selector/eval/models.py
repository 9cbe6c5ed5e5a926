"""lmms-eval chat models that answer with the video tokens a compression method keeps.

`entropy_select_llava_onevision`, `entropy_select_qwen2_5_vl`, `entropy_select_qwen3_vl` (one per family of
`selector.vlm.FAMILIES`, registered through the `lmms_eval.models` entry point, see `selector.eval.manifest`)
load the stock transformers checkpoint through `selector.vlm` and
answer every `generate_until` request with the tokens `method` keeps at `retention` (1.0: all of them, the stock
model). model_args (``--model_args pretrained=DIR,retention=0.35,method=entropy_select,alpha=0.7``):

- ``pretrained``: hub id or local folder of a checkpoint of the model's family
- ``method``: a name of `selector.compare.METHODS` (default ``entropy_select``)
- ``retention``: share of the video tokens kept, in (0, 1] (default 1.0)
- ``num_frames``: frames sampled uniformly from each video (default 16)
- ``max_new_tokens``: longest answer (default: the task's generation_kwargs, else 64)
- ``prefill``: ``auto`` / ``graph`` / ``compiled`` / ``eager`` (see `selector.vlm.load_vlm`)
- every `SelectorConfig` knob by its name (``alpha``, ``tau``, ``window``, ...; ``max_tokens=0``: no cap); they
  apply to ``method=entropy_select``.

Each answer carries a `SampleRecord` (lmms-eval writes it into the sample logs under ``token_counts``):
kept and full visual-token counts, selection ms, LLM-prefill ms (CUDA events on a GPU), end-to-end ms (video
read to last token). With ``--log_samples`` the results get ``efficiency.entropy_select``: per task the median
and p90 of each (`summarize`).
"""

from __future__ import annotations

import dataclasses
import math
import os
import time
from dataclasses import dataclass
from typing import Any

import torch
from lmms_eval.api.instance import GenerationResult, Instance, TokenCounts
from lmms_eval.api.model import lmms
from loguru import logger
from tqdm import tqdm

from ..config import SelectorConfig, SelectorError, config_from, knobs
from ..video import VideoError, read_clip
from ..vlm import FAMILIES, VLMError, load_vlm

__all__ = ["EntropySelectLlavaOneVision", "EntropySelectQwen25VL", "SampleRecord", "summarize", "TIMING_FIELDS"]

#: per-sample fields summarised per task (median, p90)
TIMING_FIELDS = ("kept_visual_tokens", "full_visual_tokens", "selection_ms", "prefill_ms", "decode_ms_per_token",
                 "e2e_ms")


@dataclass
class SampleRecord(TokenCounts):
    """lmms-eval's per-request token counts (input = the prompt the language model got, compressed), plus what
    the compression kept and what each stage cost."""

    method: str = ""
    retention: float = 1.0
    kept_visual_tokens: int | None = None
    full_visual_tokens: int | None = None
    frames: int | None = None
    read_ms: float | None = None  # decoding and sampling the video file
    vision_ms: float | None = None  # vision tower + projector (+ pooling)
    selection_ms: float | None = None
    prefill_ms: float | None = None  # LLM prefill with the kept tokens
    decode_ms_per_token: float | None = None  # the answer's tokens after the first (None: a one-token answer)
    e2e_ms: float | None = None  # video read to last answer token
    rank: int | None = None  # the process that answered
    error: str | None = None

    def to_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = dict(super().to_dict())
        for f in dataclasses.fields(self):
            if f.name not in ("input_tokens", "output_tokens", "reasoning_tokens"):
                v = getattr(self, f.name)
                if v is not None:
                    d[f.name] = round(v, 3) if isinstance(v, float) else v
        return d


def _percentile(values: list[float], q: float) -> float:
    """Linear-interpolated percentile (numpy's default), q in [0, 100]."""
    v = sorted(values)
    pos = (len(v) - 1) * q / 100
    lo, hi = math.floor(pos), math.ceil(pos)
    return v[lo] + (v[hi] - v[lo]) * (pos - lo)


def summarize(samples_by_task: dict[str, list[dict]]) -> dict[str, dict[str, Any]]:
    """Per task, from lmms-eval's logged samples: how many carry a record, how many failed, and the median and
    p90 of each of TIMING_FIELDS. Tasks whose samples carry no record (another model) are left out."""
    out: dict[str, dict[str, Any]] = {}
    for task, samples in samples_by_task.items():
        records = [e for s in samples if isinstance(s, dict) for e in (s.get("token_counts") or [])
                   if isinstance(e, dict) and "method" in e]
        if not records:
            continue
        row: dict[str, Any] = {"samples": len(records), "errors": sum(1 for r in records if r.get("error")),
                               "method": records[0]["method"], "retention": records[0]["retention"]}
        for name in TIMING_FIELDS:
            vals = [float(r[name]) for r in records if isinstance(r.get(name), (int, float))]
            if vals:
                row[name] = {"median": round(_percentile(vals, 50), 3), "p90": round(_percentile(vals, 90), 3)}
        out[task] = row
    return out


def _install_summary() -> None:
    """lmms-eval builds the results' `efficiency` block from the gathered samples of all processes
    (`lmms_eval.evaluator.build_efficiency_summary`, rank 0) and offers no hook for a model's own summary: wrap
    that function once so the block also holds `entropy_select` = `summarize(samples)`."""
    from lmms_eval import evaluator

    original = evaluator.build_efficiency_summary
    if getattr(original, "_entropy_select", False):
        return

    def build_efficiency_summary(results: dict[str, Any]) -> dict[str, Any]:
        summary = dict(original(results) or {})
        samples = results.get("samples")
        if isinstance(samples, dict):
            ours = summarize(samples)
            if ours:
                summary["entropy_select"] = ours
                for task, row in ours.items():
                    logger.info(f"{task}: {row['samples']} answers with {row['method']} at r={row['retention']:g}; "
                                + ", ".join(f"{k} median {v['median']:g} p90 {v['p90']:g}" for k, v in row.items()
                                            if isinstance(v, dict)))
        return summary

    build_efficiency_summary._entropy_select = True  # type: ignore[attr-defined]
    evaluator.build_efficiency_summary = build_efficiency_summary


def _parse_knobs(raw: dict[str, Any], method: str) -> SelectorConfig:
    table = {k.name: k for k in knobs()}
    unknown = sorted(set(raw) - set(table))
    if unknown:
        raise ValueError(f"unknown model_args {', '.join(unknown)}; the model takes pretrained, method, retention, "
                         f"num_frames, max_new_tokens, prefill, device, batch_size and the selector knobs "
                         f"{', '.join(table)}")
    if raw and method != "entropy_select":
        raise ValueError(f"the selector knobs ({', '.join(raw)}) apply to method=entropy_select, not {method}")
    try:
        return config_from(raw)
    except SelectorError as e:
        raise ValueError(f"model_args: {e}") from None


def _video_and_text(messages: list[dict], task: str) -> tuple[str, str]:
    """The one video path and the text of the user's turn(s) of lmms-eval chat messages."""
    videos, texts = [], []
    for m in messages:
        content = m.get("content")
        if isinstance(content, str):
            if m.get("role") == "user":
                texts.append(content)
            continue
        for part in content or []:
            kind = part.get("type")
            if kind == "text" and m.get("role") == "user":
                texts.append(part.get("text", ""))
            elif kind == "video":
                url = part.get("url")
                url = url.get("url") or url.get("path") if isinstance(url, dict) else url
                videos.append(str(url))
            elif kind in ("image", "audio"):
                raise ValueError(f"task {task} gives an {kind}; entropy_select models answer questions about one "
                                 "video")
    if len(videos) != 1:
        raise ValueError(f"task {task} gives {len(videos)} videos in one request; entropy_select models take one")
    return videos[0], "\n".join(t for t in texts if t)


def _place() -> tuple[int, int]:
    """(rank, world size): torch.distributed's when a process group exists, else the launcher's RANK and
    WORLD_SIZE (what lmms-eval's evaluator reads)."""
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return int(os.environ.get("RANK", 0)), int(os.environ.get("WORLD_SIZE", 1))


def _device(asked: str | None, world_size: int) -> torch.device:
    """Each process's device: cuda:LOCAL_RANK when several processes share a GPU machine, the one asked for
    (lmms-eval's --device) otherwise, the CPU where CUDA is missing or ACCELERATE_USE_CPU is set."""
    use_cpu = os.environ.get("ACCELERATE_USE_CPU", "").lower() in ("1", "true", "yes")
    if asked is not None and world_size == 1:
        dev = torch.device(asked)
        if dev.type == "cuda" and not torch.cuda.is_available():
            raise ValueError(f"device={asked} asked for, but this machine has no CUDA device; use --device cpu")
        return dev
    if torch.cuda.is_available() and not use_cpu:
        return torch.device("cuda", int(os.environ.get("LOCAL_RANK", 0)) % torch.cuda.device_count())
    return torch.device("cpu")


def _one_cpu_process_of_several() -> bool:
    """`accelerate launch --cpu --num_processes N` (N > 1, no mpirun) starts a single process: it sets
    MASTER_ADDR (for N > 1) but no WORLD_SIZE."""
    return (os.environ.get("ACCELERATE_USE_CPU", "").lower() in ("1", "true") and "MASTER_ADDR" in os.environ
            and "WORLD_SIZE" not in os.environ and "OMPI_COMM_WORLD_SIZE" not in os.environ
            and "PMI_SIZE" not in os.environ)


class _EntropySelectChat(lmms):
    is_simple = False
    family = ""
    model_id = ""

    def __init__(self, pretrained: str, method: str = "entropy_select", retention: float = 1.0,
                 num_frames: int = 16, max_new_tokens: int | None = None, prefill: str = "auto",
                 device: str | None = None, batch_size: int | str = 1, max_batch_size: int | None = None,
                 **selector_knobs: Any) -> None:
        super().__init__()
        from ..compare import METHODS

        if method not in METHODS:
            raise ValueError(f"unknown method {method!r}; the methods are {', '.join(METHODS)}")
        if isinstance(retention, bool) or not isinstance(retention, (int, float)) or not 0 < retention <= 1:
            raise ValueError(f"retention must be in (0, 1], got {retention!r}")
        if isinstance(num_frames, bool) or not isinstance(num_frames, int) or num_frames < 1:
            raise ValueError(f"num_frames must be a positive int, got {num_frames!r}")
        if max_new_tokens is not None and (not isinstance(max_new_tokens, int) or max_new_tokens < 1):
            raise ValueError(f"max_new_tokens must be a positive int, got {max_new_tokens!r}")
        if str(batch_size) not in ("1", "auto"):
            logger.warning(f"{self.model_id} answers one request at a time; batch_size={batch_size} is ignored")
        self.method, self.retention, self.num_frames = method, float(retention), num_frames
        self.max_new_tokens = max_new_tokens
        self.selector_config = _parse_knobs(selector_knobs, method)

        from accelerate import Accelerator

        self.accelerator = Accelerator()
        # the process's place as lmms-eval's evaluator sees it (it splits the documents by RANK / WORLD_SIZE)
        self._rank, self._world_size = _place()
        self._device = _device(device, self._world_size)
        if self._device.type == "cpu" and self._world_size > 1:  # the processes share the cores
            torch.set_num_threads(max(1, (os.cpu_count() or 1) // self._world_size))
        if _one_cpu_process_of_several():
            logger.warning("`accelerate launch --cpu --num_processes N` without --mpirun_hostfile starts one process "
                           "(accelerate starts several CPU processes only through mpirun): this run answers every "
                           "document in one process. For N processes on CPUs: add --mpirun_hostfile FILE (a line "
                           "'localhost slots=N'; Open MPI or Intel MPI installed), or without MPI: "
                           "ACCELERATE_USE_CPU=true accelerate launch --multi_gpu --num_processes N -m lmms_eval ...")
        dev = self._device
        try:
            self.vlm = load_vlm(str(pretrained), device=dev, prefill=prefill)
        except VLMError as e:
            raise ValueError(f"{self.model_id}: {e}") from None
        if self.vlm.family != self.family:
            raise ValueError(f"{self.model_id} needs a {self.family} checkpoint; '{pretrained}' is a "
                             f"{self.vlm.family} model (use entropy_select_{self.vlm.family})")
        _install_summary()
        logger.info(f"{self.model_id}: {pretrained} on {dev}, method={method}, retention={self.retention}, "
                    f"{num_frames} frames (process {self._rank + 1} of {self._world_size})")

    @property
    def device(self) -> torch.device:
        return self._device

    @property
    def batch_size(self) -> int:
        return 1

    def answer(self, video: str, question: str, gen_kwargs: dict[str, Any]) -> tuple[str, SampleRecord]:
        """One request: the answer text and its record (an unreadable video gives "" and the error)."""
        t0 = time.perf_counter()
        budget = self.max_new_tokens or int(gen_kwargs.get("max_new_tokens") or 64)
        record = SampleRecord(method=self.method, retention=self.retention, rank=self._rank)
        try:
            clip = read_clip(video, self.num_frames)
            frames = clip.frames
            t1 = time.perf_counter()
            a = self.vlm.answer(frames, question, self.retention, self.selector_config, budget, method=self.method,
                                timestamps=clip.timestamps)
        except (VideoError, VLMError) as e:
            record.error = str(e)
            logger.error(f"{self.model_id}: {video}: {e}")
            return "", record
        text = a.text
        for stop in gen_kwargs.get("until") or []:  # the task's stop strings end the answer
            if isinstance(stop, str) and stop and stop in text:
                text = text.split(stop)[0]
        record.input_tokens, record.output_tokens = a.prompt_tokens, a.new_tokens
        record.kept_visual_tokens, record.full_visual_tokens = a.visual_tokens, a.full_visual_tokens
        record.frames = int(frames.shape[0])
        record.read_ms = (t1 - t0) * 1e3
        record.vision_ms = a.stages_ms["vision"]
        record.selection_ms = a.stages_ms["select"]
        record.prefill_ms = a.stages_ms["llm_prefill"]
        record.decode_ms_per_token = a.ms_per_token
        record.e2e_ms = (time.perf_counter() - t0) * 1e3 - a.setup_ms
        return text, record

    def generate_until(self, requests: list[Instance]) -> list[GenerationResult]:
        out = []
        warned = False
        for req in tqdm(requests, disable=self.rank != 0, desc=f"{self.model_id} answering"):
            _ctx, doc_to_messages, gen_kwargs, doc_id, task, split = req.args
            gen_kwargs = dict(gen_kwargs or {})
            if float(gen_kwargs.get("temperature") or 0) > 0 and not warned:
                logger.warning(f"{self.model_id} decodes greedily; temperature={gen_kwargs['temperature']} ignored")
                warned = True
            messages = doc_to_messages(self.task_dict[task][split][doc_id])
            video, question = _video_and_text(messages, task)
            text, record = self.answer(video, question, gen_kwargs)
            self.cache_hook.add_partial("generate_until", (_ctx, gen_kwargs), text)
            out.append(GenerationResult(text=text, token_counts=record))
        return out

    def loglikelihood(self, requests: list[Instance]) -> list[tuple[float, bool]]:
        tasks = sorted({r.task_name for r in requests})
        raise NotImplementedError(f"{self.model_id} answers by generation (generate_until); task(s) "
                                  f"{', '.join(tasks)} ask for log-likelihoods, which it does not compute")

    def generate_until_multi_round(self, requests: list[Instance]) -> list[str]:
        tasks = sorted({r.task_name for r in requests})
        raise NotImplementedError(f"{self.model_id} answers one question per video; task(s) {', '.join(tasks)} "
                                  "are multi-round")


def _chat_class(family: Any) -> type:
    """The lmms-eval chat model of one VLM family of the registry."""
    return type(family.eval_class, (_EntropySelectChat,), {
        "__doc__": f"{family.label} (transformers' {family.class_name}) with compressed video tokens.",
        "__module__": __name__, "family": family.model_type, "model_id": f"entropy_select_{family.model_type}"})


# one chat model per family, under the class name the registry gives (what the entry point's manifest names)
for _family in FAMILIES.values():
    globals()[_family.eval_class] = _chat_class(_family)


def __getattr__(name: str) -> type:
    """The chat model of a family registered after this module was imported (lmms-eval imports it by the class
    path the manifest gives)."""
    for family in FAMILIES.values():
        if family.eval_class == name:
            globals()[name] = cls = _chat_class(family)
            return cls
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


EntropySelectLlavaOneVision = globals()["EntropySelectLlavaOneVision"]
EntropySelectQwen25VL = globals()["EntropySelectQwen25VL"]
EntropySelectQwen3VL = globals()["EntropySelectQwen3VL"]
