"""`python -m selector.bench_vlm`: the VLM benchmark (code in selector.bench.vlm)."""

from .bench.vlm import main

if __name__ == "__main__":
    main()
