"""``dir()`` of curvlab's public modules: their public names, not the helpers they import.

A public module ends with ``__dir__ = public_dir(globals())`` after its ``__all__``: ``dir()``
(and so tab completion) then lists ``__all__`` (plus any ``extra`` names, such as attributes a
module defines lazily) and the module's dunders, never ``torch``, ``nn``, ``math`` or the
private helpers it imports. The names stay importable as before (PEP 562).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

__all__ = ["public_dir"]


def public_dir(namespace: dict, extra: Iterable[str] = ()) -> Callable[[], list[str]]:
    """A module ``__dir__`` listing ``namespace["__all__"]``, ``extra`` and the dunders.

    Examples
    --------
    >>> ns = {"__all__": ["f"], "__name__": "m", "f": len, "torch": None}
    >>> public_dir(ns)()
    ['__all__', '__name__', 'f']
    """
    extra = tuple(extra)

    def __dir__() -> list[str]:
        dunders = {n for n in namespace if n.startswith("__") and n.endswith("__")}
        return sorted({*namespace["__all__"], *extra, *dunders})

    return __dir__
