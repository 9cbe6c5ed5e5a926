"""ENTROPY-SELECT Explorer: see, frame by frame, what the selector keeps and why. Run: python app.py
(--mcp, or GRADIO_MCP_SERVER=1: also serve /analyze, /compare and /ask as MCP tools at /gradio_api/mcp/)

Wiring only: the page and its handlers are selector.app.ui, the pipeline selector.app.service, the views viz.
"""

from __future__ import annotations

import logging
import os
import sys

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")  # offline by default: no calls home

from selector.app.ui import create_demo, launch  # noqa: E402
from selector.cpu_tuning import tune_malloc  # noqa: E402

tune_malloc()  # large new tensors reuse freed heap instead of fresh pages (selector/cpu_tuning.py)
demo = create_demo()

if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO)
    launch(demo, **({"mcp_server": True} if "--mcp" in sys.argv[1:] else {}))
