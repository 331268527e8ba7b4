"""`build.patching.patched`: the hooks into torch, optimum and onnx are undone whatever happens in the block."""

from __future__ import annotations

import types

import pytest

from gpuxbuild.build.patching import patched


class Base:
    def inherited(self):
        return "base"


class Owner(Base):
    @staticmethod
    def helper():
        return "original"


def test_a_class_gets_back_its_staticmethod_and_its_inherited_attribute_even_after_an_error():
    with (
        pytest.raises(RuntimeError),
        patched(Owner, helper=staticmethod(lambda: "hook"), inherited=lambda self: "hook"),
    ):
        assert Owner.helper() == "hook" and Owner().inherited() == "hook"
        raise RuntimeError("the export failed")
    assert Owner.helper() == "original" and isinstance(vars(Owner)["helper"], staticmethod)
    assert Owner().inherited() == "base" and "inherited" not in vars(Owner)


def test_a_module_gets_back_each_function():
    module = types.ModuleType("lib")
    module.load = len
    with patched(module, load=str, save=repr):
        assert module.load is str and module.save is repr
    assert module.load is len and not hasattr(module, "save")
