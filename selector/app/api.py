"""The endpoints' signatures and API documentation: the parameters gradio lists on the API page and gives the MCP
tools, in the positions clients rely on. No handler logic."""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any

import gradio as gr

from ..config import Knob, knobs
from .page import FAMILY_LABELS

#: positional order of the endpoints' inputs after `video`, kept for clients that call them by position; a knob
#: missing here (a new one) is appended after these in the knob table's order
ANALYZE_ORDER = ("retention", "alpha", "tau", "window", "temporal_window", "grid", "num_frames", "encoder",
                 "past_window", "rho", "grid_fusion", "stretch", "q", "tau_alloc", "min_tokens", "max_tokens")
ASK_ORDER = ("question", "retention", "model", "num_frames", "max_new_tokens", "alpha", "tau", "window",
             "temporal_window", "grid", "past_window", "rho", "grid_fusion", "q", "tau_alloc", "min_tokens",
             "max_tokens")


def ordered(names: list[str], legacy: tuple[str, ...]) -> list[str]:
    return [n for n in legacy if n in names] + [n for n in names if n not in legacy]


def signature(names: list[str], defaults: dict[str, Any]) -> inspect.Signature:
    params = [inspect.Parameter(n, inspect.Parameter.POSITIONAL_OR_KEYWORD,
                                default=defaults.get(n, inspect.Parameter.empty)) for n in names]
    params.append(inspect.Parameter("progress", inspect.Parameter.POSITIONAL_OR_KEYWORD, default=gr.Progress()))
    return inspect.Signature(params)


KNOB_HELP = {k.name: k for k in knobs()}
#: what each endpoint parameter means, for the API page and the MCP tools (the knobs' lines come from the table)
PARAM_HELP = {
    "video": "the video file (mp4, webm, mov, mkv, ...), uploaded to this server (gradio_client's handle_file "
             "uploads a local file; MCP: the /gradio_api/file= URL of an upload, or a bundled example's name); "
             "the server fetches no URLs",
    "retention": "share r of the video tokens kept, in (0, 1] (0.35 keeps 35 %)",
    "num_frames": "frames sampled uniformly over the whole video",
    "encoder": "image encoder: dinov2-s (offline default), efficientnet-lite0 (offline), or a hub id on the server's "
               "allowlist",
    "stretch": "colour each map by its own range instead of a fixed scale (on by default: at the paper's τ = 1 the "
               "entropy map spans a few thousandths)",
    "question": "the question about the video",
    "model": f"{FAMILY_LABELS} checkpoint (hub id or local folder on the allowlist; empty: the default)",
    "max_new_tokens": "longest answer, in tokens",
    "methods": "comma-separated names of compression methods (entropy_select, random, frame_sample, uniform_pool, "
               "dycoke, vidcom2, fastvid, llava_scissor, tome, ...)",
}


def api_doc(summary: str, sig: inspect.Signature, knob_table: dict[str, Knob]) -> str:
    """A docstring with an Args section (gradio reads it for the API page and the MCP tools' parameters)."""
    lines = [summary, "", "Args:"]
    for n in sig.parameters:
        if n != "progress":
            k = knob_table.get(n)
            what = PARAM_HELP.get(n) or (k.help + (" (0: no cap)" if k.optional else "") if k else n)
            lines.append(f"    {n}: {what}")
    return "\n".join(lines)


def with_signature(fn: Callable[[dict, Any], Any], sig: inspect.Signature, name: str, doc: str,
                    annotations: dict[str, type] | None = None) -> Callable:
    """A function with the given parameters (gradio reads them for the API page) that calls fn(values, progress);
    `annotations` give parameters gradio fills itself (gr.SelectData: the event's data)."""
    def values_of(args: tuple, kwargs: dict) -> dict:
        bound = sig.bind(*args, **kwargs)
        bound.apply_defaults()
        return dict(bound.arguments)

    if inspect.isgeneratorfunction(fn):  # a streaming endpoint stays a generator for gradio
        def wrapper(*args, **kwargs):
            values = values_of(args, kwargs)
            yield from fn(values, values.pop("progress"))
    else:
        def wrapper(*args, **kwargs):
            values = values_of(args, kwargs)
            return fn(values, values.pop("progress"))
    wrapper.__signature__ = sig  # type: ignore[attr-defined]
    wrapper.__annotations__ = dict(annotations or {})
    wrapper.__name__ = wrapper.__qualname__ = name
    wrapper.__doc__ = doc if "Args:" in doc or name == "ui_run" else api_doc(doc, sig, KNOB_HELP)
    return wrapper

