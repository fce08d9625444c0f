"""aiogram with its Telegram types built on first use instead of at import.

aiogram declares every Telegram type `defer_build=True`, then the end of `aiogram.types` calls
`model_rebuild` on all of them (about 650 pydantic models): 3-5 s and ~95 MB on this machine,
most of `coursebot run`'s start-up and idle memory. Installed before aiogram is imported, `install`
lets that loop only hand each type module the names its forward references need; pydantic then
builds a type the first time it validates or serialises one (the types an update and a reply
need take ~0.1 s). Every other `model_rebuild` call goes to pydantic unchanged.
"""

from __future__ import annotations

import sys

from pydantic import BaseModel

TYPES_PACKAGE = "aiogram.types."
_MARK = "_coursebot_deferred"


def install() -> None:
    """Defer building aiogram's types until used; a no-op once aiogram is imported."""
    current = BaseModel.model_rebuild.__func__
    if "aiogram.types" in sys.modules or getattr(current, _MARK, False):
        return
    BaseModel.model_rebuild = classmethod(_deferring(current))


def _deferring(real):
    """A `model_rebuild` that skips aiogram's import-time rebuild of its own types."""

    def model_rebuild(cls, *, _types_namespace=None, **kwargs):
        if _types_namespace is None or not cls.__module__.startswith(TYPES_PACKAGE):
            return real(cls, _types_namespace=_types_namespace, **kwargs)
        if cls.__pydantic_complete__:
            return None
        _share_names(cls.__module__, _types_namespace)
        return None

    setattr(model_rebuild, _MARK, True)
    return model_rebuild


_shared: set[str] = set()


def _share_names(module_name: str, namespace: dict) -> None:
    """Give a type module aiogram's names (its forward references resolve there later)."""
    if module_name in _shared:
        return
    module = vars(sys.modules[module_name])
    for name, value in namespace.items():
        module.setdefault(name, value)
    _shared.add(module_name)


def keep_response_types() -> None:
    """Keep every `Response[T]` aiogram makes for an API answer, instead of remaking it.

    aiogram validates each answer as `Response[method.__returning__]`. pydantic caches generic
    classes in a WeakValueDictionary and the class is only referenced by its own cycles, so the
    garbage collector drops it and the next answer builds it again (~5-10 ms of schema work,
    about one send in six under load). A few dozen return types exist; keeping them is cheap.
    """
    from aiogram.methods.base import Response

    if getattr(Response, _MARK, False):
        return
    real = Response.__class_getitem__.__func__
    kept: dict = {}

    def class_getitem(cls, params):
        if cls is not Response:
            return real(cls, params)
        try:
            return kept[params]
        except KeyError:
            kept[params] = made = real(cls, params)
            return made
        except TypeError:  # unhashable parameters: not cached
            return real(cls, params)

    Response.__class_getitem__ = classmethod(class_getitem)
    setattr(Response, _MARK, True)
