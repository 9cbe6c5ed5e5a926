"""Files the app hands out (view images, downloads): each written once and completely, under a name no other
request reuses, in a folder only this server's user can read. No gradio.

Why: gradio serves a returned file from its own cache, copying it there atomically under a name derived from its
bytes; images returned as PIL objects are instead encoded and written in place, so two requests drawing the same
picture would rewrite one file while it is streamed. Handing gradio finished files avoids that.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import threading
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

from PIL import Image

__all__ = ["OutputFiles", "sweep_gradio_cache"]


class OutputFiles:
    """A private folder (0700, files 0600) of per-request subfolders with random names. `write` puts a file
    there through a temporary name and an atomic rename; folders older than `ttl` seconds are removed when a new
    one is made (gradio has copied what it serves long before), checked at most every min(60, ttl / 2) s."""

    def __init__(self, parent: str | os.PathLike[str] | None = None, ttl: float = 900.0) -> None:
        self.root = Path(tempfile.mkdtemp(prefix="entropy-select-out-", dir=parent))  # mode 0700
        self.ttl = ttl
        self._lock = threading.Lock()
        self._last_sweep = 0.0
        #: called with the time at every sweep (the app sweeps gradio's cache with it: `sweep_gradio_cache`)
        self.on_sweep: Callable[[float], None] | None = None

    def folder(self) -> Path:
        """A new folder for one request's files."""
        self.sweep()
        d = self.root / uuid.uuid4().hex
        d.mkdir(mode=0o700)
        return d

    def write(self, folder: Path, name: str, writer: Callable[[str], None]) -> str:
        """`writer(path)` writes the file at a temporary path; it then appears as folder/name, complete."""
        fd, tmp = tempfile.mkstemp(dir=folder, prefix=".tmp-", suffix=Path(name).suffix)  # mode 0600; the suffix
        # stays: writers such as numpy.savez add one when it is missing
        os.close(fd)
        try:
            writer(tmp)
            os.chmod(tmp, 0o600)
            os.replace(tmp, folder / name)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        return str(folder / name)

    def image(self, folder: Path, name: str, img: Image.Image, quality: int = 90) -> str:
        """A JPEG of img (gradio's own choice for these views)."""
        return self.write(folder, f"{name}.jpeg", lambda p: img.convert("RGB").save(p, "JPEG", quality=quality))

    def sweep(self, now: float | None = None) -> int:
        """Remove request folders older than ttl (at most every min(60, ttl / 2) s unless `now` is given); returns
        how many."""
        now = time.time() if now is None else now
        with self._lock:
            if now - self._last_sweep < min(60.0, self.ttl / 2) and now >= self._last_sweep:
                return 0
            self._last_sweep = now
        if self.on_sweep is not None:
            self.on_sweep(now)
        removed = 0
        for d in self.root.iterdir():
            try:
                if now - d.stat().st_mtime > self.ttl:
                    shutil.rmtree(d, ignore_errors=True)
                    removed += 1
            except FileNotFoundError:
                pass
        return removed

    def count(self) -> int:
        """Files held now (for tests and the soak's bound)."""
        return sum(1 for p in self.root.rglob("*") if p.is_file())


def sweep_gradio_cache(blocks: Any, age: float, now: float | None = None) -> int:
    """Remove the files gradio made for `blocks` (its copies of our files, uploads) older than `age` seconds, as its
    own `delete_cache` task does, but over a snapshot of each set: gradio's task iterates the live sets, which
    requests grow meanwhile, and its loop ends for good at the first "Set changed size during iteration" (seen under
    load: the cache then grew without bound). Files a component keeps (examples) stay. Returns how many."""
    now = time.time() if now is None else now
    keep: set = set()
    for component in list(blocks.blocks.values()):
        keep.update(getattr(component, "keep_in_cache", ()))
    removed = 0
    for files in list(getattr(blocks, "temp_file_sets", ())):
        for f in list(files):  # one C-level copy: atomic under the GIL
            if f in keep:
                continue
            try:
                if now - os.lstat(f).st_ctime > age:
                    os.remove(f)
                    files.discard(f)
                    removed += 1
            except FileNotFoundError:
                files.discard(f)
    return removed
