"""Load dataset pickles without executing code from them.

Several benchmark annotations are shipped only as pickles (REFER's ``refs(unc).p``, the ``mask_dict.pkl`` files
of Ref-YouTube-VOS / Ref-DAVIS17).  ``pickle.load`` would run any callable a tampered file names, so the
readers load them through :func:`load_pickle`, whose unpickler resolves only the globals that plain data needs:

* builtin containers and scalars (``dict``, ``list``, ``tuple``, ``set``, ``frozenset``, ``bytes``,
  ``bytearray``, ``str``, ``int``, ``float``, ``complex``, ``bool``) — protocol < 4 pickles reconstruct sets
  and some of these through a global lookup;
* ``_codecs.encode`` — the *only* way protocol-2 pickles written by Python 3 store ``bytes`` (for example the
  ``counts`` of a COCO RLE); it turns a ``str`` into ``bytes`` and can do nothing else.

Everything else (``copyreg._reconstructor``, ``numpy`` arrays, ``os.system``, ``builtins.eval``...) raises
:class:`UnsafePickleError` naming the refused global.  Python 2 pickles (REFER) name ``__builtin__`` /
``copy_reg``; those module names are mapped to their Python 3 equivalents before the check.
"""

from __future__ import annotations

import io
import pickle
from pathlib import Path
from typing import Any

__all__ = ["UnsafePickleError", "SafeUnpickler", "load_pickle", "loads_pickle", "ALLOWED_GLOBALS"]

ALLOWED_GLOBALS: frozenset[tuple[str, str]] = frozenset(
    {
        ("builtins", n)
        for n in (
            "dict",
            "list",
            "tuple",
            "set",
            "frozenset",
            "bytes",
            "bytearray",
            "str",
            "int",
            "float",
            "complex",
            "bool",
        )
    }
    | {("_codecs", "encode")}
)

# Python 2 module names used by old pickles (a subset of _compat_pickle.IMPORT_MAPPING).
_PY2_MODULES = {"__builtin__": "builtins", "copy_reg": "copyreg", "_codecs": "_codecs"}


class UnsafePickleError(pickle.UnpicklingError):
    """The pickle references a global outside :data:`ALLOWED_GLOBALS` (it could run code when loaded)."""


class SafeUnpickler(pickle.Unpickler):
    """An unpickler that resolves only :data:`ALLOWED_GLOBALS`; ``source`` names the file in errors."""

    def __init__(self, file: Any, *, source: str = "<pickle>", encoding: str = "ASCII") -> None:
        super().__init__(file, encoding=encoding)
        self._source = source

    def find_class(self, module: str, name: str) -> Any:
        mod = _PY2_MODULES.get(module, module)
        if (mod, name) not in ALLOWED_GLOBALS:
            raise UnsafePickleError(
                f"{self._source}: refusing to load global '{module}.{name}'; only plain builtin containers and "
                f"scalars may appear in dataset pickles (allowed: "
                f"{', '.join(sorted(f'{m}.{n}' for m, n in ALLOWED_GLOBALS))})"
            )
        return super().find_class(mod, name)

    def persistent_load(self, pid: Any) -> Any:
        raise UnsafePickleError(
            f"{self._source}: persistent ids are not allowed in dataset pickles ({pid!r})"
        )


def loads_pickle(data: bytes, *, source: str = "<bytes>") -> Any:
    """Unpickle ``data`` with :class:`SafeUnpickler` (see :func:`load_pickle` for the string decoding)."""
    try:
        return SafeUnpickler(io.BytesIO(data), source=source).load()
    except UnicodeDecodeError:
        # Python 2 ``str`` objects holding non-ASCII bytes: the REFER files are UTF-8 text.
        try:
            return SafeUnpickler(io.BytesIO(data), source=source, encoding="utf-8").load()
        except UnicodeDecodeError:
            return SafeUnpickler(io.BytesIO(data), source=source, encoding="latin1").load()


def load_pickle(path: str | Path) -> Any:
    """Load the pickle at ``path`` allowing only plain data.

    Python 2 ``str`` values are decoded as ASCII like ``pickle.load`` does (what the reference gets), falling
    back to UTF-8 and then Latin-1 when that fails instead of raising.

    Raises:
        FileNotFoundError: ``path`` does not exist.
        UnsafePickleError: the pickle names a global outside :data:`ALLOWED_GLOBALS`.
        pickle.UnpicklingError: the file is not a valid pickle.
    """
    p = Path(path)
    if not p.is_file():
        raise FileNotFoundError(f"pickle file not found: {p}")
    return loads_pickle(p.read_bytes(), source=str(p))
