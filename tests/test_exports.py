"""``__all__`` is exactly the public names, sorted, each documented."""

from __future__ import annotations

import inspect
import types
import typing

import pytest

import aiorunlist
import aiorunlist.exceptions
import aiorunlist.testing


@pytest.mark.parametrize("module", [aiorunlist, aiorunlist.exceptions, aiorunlist.testing])
def test_all_is_exactly_the_public_names(module: object) -> None:
    exported = list(module.__all__)  # type: ignore[attr-defined]
    assert exported == sorted(exported)
    own = module.__name__  # type: ignore[attr-defined]
    public = {
        name
        for name, value in vars(module).items()
        if not name.startswith("_")
        and not inspect.ismodule(value)
        and name not in ("annotations", "TYPE_CHECKING")
        and (
            getattr(value, "__module__", own).startswith("aiorunlist")
            # type aliases
            or typing.get_origin(value) in (typing.Union, types.UnionType, typing.Literal)
        )
    }
    assert set(exported) == public | ({"__version__"} & set(exported))


@pytest.mark.parametrize("module", [aiorunlist, aiorunlist.exceptions, aiorunlist.testing])
def test_public_objects_have_docstrings(module: object) -> None:
    for name in module.__all__:  # type: ignore[attr-defined]
        value = getattr(module, name)
        if inspect.isclass(value) or inspect.isfunction(value):
            assert inspect.getdoc(value), f"{module.__name__}.{name} has no docstring"  # type: ignore[attr-defined]
