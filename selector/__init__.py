"""ENTROPY-SELECT: training-free local-entropy token selection for video LLMs.

The core (`config`, `maps`, `allocate`, `core`, `fast`, `graphs`, `triton_maps`) imports nothing but torch and
the stdlib (Triton only inside `_triton_kernels`, loaded when a CUDA device is used). Adapters (`video`,
`encoders`, `features`, `service`, `vlm`) sit beside it and import their own libraries lazily.
"""

from .config import SelectorConfig, SelectorError
from .core import Selection, num_kept, select_tokens

__all__ = ["SelectorConfig", "Selection", "SelectorError", "select_tokens", "num_kept"]
__version__ = "0.1.0"
