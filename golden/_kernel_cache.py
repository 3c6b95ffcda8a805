"""Where einforge's compiled Numba kernels are cached.

Generated kernels (:mod:`golden._compile`) are written to ``~/.cache/einforge/kernels`` (or
``$EINFORGE_CACHE/kernels``), one file per distinct source, and Numba caches their machine code
beside them. The hand-written kernels (:mod:`golden._attn_cpu`, :mod:`golden._fxkernels`) would
be cached beside their sources, in the checkout's
``__pycache__``: every fresh clone compiled them again (about a minute on two cores). Importing
this module registers a Numba cache locator that keeps them in
``~/.cache/einforge/numba/<digest>``, the digest of the ``golden`` package's sources: a clone
with the same sources reuses the machine code, and any change to them starts a new folder. (Numba
itself discards an entry made by another Numba version, or for another CPU.) Where the folder
cannot be made, Numba's own locators apply, as before. Folders of other versions of the sources
unused for 30 days, or beyond the 8 most recently used, are removed when a process first
compiles or loads a kernel (:func:`prune`).
"""

from __future__ import annotations

import functools
import hashlib
import os
import tempfile
from pathlib import Path

from numba.core import caching

#: the hand-written kernels' sources this locator serves
_SERVED = ("_attn_cpu.py", "_fxkernels.py")
_HERE = Path(__file__).resolve().parent


def cache_folder(name: str) -> Path:
    """``$EINFORGE_CACHE/<name>`` (default ``~/.cache/einforge/<name>``), made if missing; where
    that is not writable (a read-only home), a folder of this user's in the temporary folder."""
    root = Path(os.environ.get("EINFORGE_CACHE", Path.home() / ".cache" / "einforge")) / name
    try:
        root.mkdir(parents=True, exist_ok=True)
        if not os.access(root, os.W_OK):
            raise OSError(f"{root} is not writable")
    except OSError:
        root = Path(tempfile.gettempdir()) / f"einforge-{name}-{os.getuid()}"
        root.mkdir(parents=True, exist_ok=True)
    return root


@functools.cache
def _digest() -> str:
    """The digest of the ``golden`` package's sources (the kernels and what they call)."""
    h = hashlib.sha256()
    for path in sorted(_HERE.glob("*.py")):
        h.update(path.name.encode() + b"\0" + path.read_bytes() + b"\0")
    return h.hexdigest()[:16]


# Recent Numba releases name these publicly, earlier ones with a leading underscore. A
# release with neither keeps its own locators (the kernels cached beside their sources).
_Base = getattr(caching, "InTreeCacheLocator", None) or getattr(caching, "_InTreeCacheLocator", object)
_Impl = getattr(caching, "CacheImpl", None) or getattr(caching, "_CacheImpl", None)


#: digest folders of other sources kept beside the current one (the newest by use), and how
#: long one unused is kept at most
KEEP_FOLDERS = 8
KEEP_DAYS = 30


def prune(root: Path, current: str, keep: int = KEEP_FOLDERS, days: float = KEEP_DAYS) -> list[Path]:
    """Remove the digest folders under ``root`` other than ``current`` that were last used more
    than ``days`` ago, or beyond the ``keep`` most recently used; what it removed. Each version of
    ``golden``'s sources leaves a folder of about 2 MB; a folder another process is writing is
    left alone (its files change under the walk)."""
    import shutil
    import time

    others = []
    for d in root.iterdir() if root.is_dir() else ():
        if d.is_dir() and d.name != current and len(d.name) == 16:
            try:
                others.append((max((f.stat().st_mtime for f in d.iterdir()), default=d.stat().st_mtime), d))
            except OSError:
                continue
    others.sort(reverse=True)
    cutoff = time.time() - days * 86400
    gone = [d for i, (used, d) in enumerate(others) if i >= keep or used < cutoff]
    for d in gone:
        shutil.rmtree(d, ignore_errors=True)
    return gone


@functools.cache
def _folder() -> Path:
    """This version's folder, the stale ones of other versions pruned once a process."""
    root = cache_folder("numba")
    try:
        prune(root, _digest())
    except OSError:  # pruning is housekeeping: never in the way of a run
        pass
    return root / _digest()


class _SourcesLocator(_Base):  # type: ignore[misc, valid-type]
    """Numba's in-tree locator, with the cache folder keyed by the sources' digest instead."""

    def __init__(self, py_func: object, py_file: str) -> None:
        super().__init__(py_func, py_file)
        self._cache_path = str(_folder())

    @classmethod
    def from_function(cls, py_func: object, py_file: str) -> object:
        if Path(py_file).resolve().parent != _HERE or Path(py_file).name not in _SERVED:
            return None
        try:
            return super().from_function(py_func, py_file)
        except OSError:  # no cache folder: Numba's own locators
            return None


def _register() -> None:
    classes = getattr(_Impl, "_locator_classes", None)
    if _Base is object or not isinstance(classes, list):
        return
    if _SourcesLocator not in classes:
        classes.insert(0, _SourcesLocator)


_register()
