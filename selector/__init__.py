"""ENTROPY-SELECT: training-free local-entropy token selection for video LLMs.

Layers (docs/architecture.md): `config` (the knobs), `method` (Algorithm 1, its stages as `Backend` objects) and
`backends` (which import the method and register their objects) import nothing but torch and the stdlib (Triton
only inside `backends.triton_kernels`, loaded when a CUDA device is used). Adapters (`video`, `encoders`,
`features`, `vlm`, `export`, `limits`) sit beside them and import their own libraries lazily;
`app` is the web app, `bench` the benchmarks; neither is imported by the rest.
"""

from . import backends  # noqa: F401  (registers the backends `select_tokens` chooses from)
from .config import SelectorConfig, SelectorError
from .method.pipeline import Selection, num_kept
from .method.select import select_tokens

__all__ = ["SelectorConfig", "Selection", "SelectorError", "select_tokens", "num_kept"]
__version__ = "0.1.0"
