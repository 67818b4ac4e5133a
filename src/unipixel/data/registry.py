"""Dataset reader registry: adding a dataset is writing one file in ``unipixel/data/readers/``.

A reader module decorates a function ``(root: Path, split: str, **options) -> Iterator[Sample]`` with
:func:`register_reader`; :func:`get_reader` imports every module of the readers package on first use, so no
central list needs editing.
"""

from __future__ import annotations

import importlib
import pkgutil
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .schema import Sample

ReaderFn = Callable[..., Iterator[Sample]]


@dataclass(frozen=True)
class ReaderInfo:
    name: str
    fn: ReaderFn
    splits: tuple[str, ...]
    description: str
    data_dir: str | None = None  # where the dataset sits below the reference's data/ folder (default: its name)


_READERS: dict[str, ReaderInfo] = {}
_LOADED = False


def register_reader(
    name: str, splits: tuple[str, ...] = (), description: str = "", data_dir: str | None = None
) -> Callable[[ReaderFn], ReaderFn]:
    """Register ``fn`` as the reader of dataset ``name`` (lower-case, e.g. ``"refcoco"``).

    ``data_dir``: the dataset's folder below the reference's ``data/`` folder when it is not ``data/<name>``
    (e.g. ``"lisa/refer_seg"``; ``{split}`` is filled in), so ``--data-root data`` finds it."""

    def deco(fn: ReaderFn) -> ReaderFn:
        if name in _READERS and _READERS[name].fn is not fn:
            raise ValueError(f"dataset reader {name!r} is registered twice")
        _READERS[name] = ReaderInfo(
            name, fn, tuple(splits), description or (fn.__doc__ or "").strip().split("\n")[0], data_dir
        )
        return fn

    return deco


def _load_all() -> None:
    global _LOADED
    if _LOADED:
        return
    from . import readers

    for mod in pkgutil.iter_modules(readers.__path__):
        importlib.import_module(f"{readers.__name__}.{mod.name}")
    _LOADED = True


def available_readers() -> dict[str, ReaderInfo]:
    _load_all()
    return dict(sorted(_READERS.items()))


def get_reader(name: str) -> ReaderInfo:
    _load_all()
    try:
        return _READERS[name]
    except KeyError:
        raise KeyError(f"no dataset reader {name!r}; available: {', '.join(sorted(_READERS))}") from None


def dataset_root(name: str, data_root: str | Path, split: str) -> Path:
    """The folder of dataset ``name`` inside the reference's ``data/`` folder ``data_root``: its registered
    ``data_dir`` (e.g. ``data/lisa/refer_seg`` for RefCOCO), else ``data_root/name``."""
    info = get_reader(name)
    root = Path(data_root)
    if info.data_dir is not None:
        sub = root / info.data_dir.format(split=split)
        if sub.exists() or not (root / name).exists():
            return sub
    return root / name


def read_dataset(name: str, root: str | Path, split: str, **options: Any) -> Iterator[Sample]:
    """Iterate the samples of dataset ``name`` under ``root`` for ``split``."""
    info = get_reader(name)
    if info.splits and split not in info.splits:
        raise ValueError(f"dataset {name!r} has splits {info.splits}, not {split!r}")
    root = Path(root)
    if not root.exists():
        raise FileNotFoundError(f"data root {root} does not exist (dataset {name!r})")
    return info.fn(root, split, **options)
