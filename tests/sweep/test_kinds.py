"""Trial kinds: an explicit allowlist of deepscope's own modules, each with PARAMS and run_kind."""

from __future__ import annotations

import pytest

from deepscope.sweep.kinds import KINDS, kind_module


def test_every_kind_is_a_deepscope_module_with_its_entry_points():
    assert KINDS["train"] == "deepscope.sweep.trial"  # the default kind, run by the trial module itself
    for kind, name in KINDS.items():
        if kind == "train":
            continue
        assert name.startswith("deepscope."), kind
        module = kind_module(kind)
        assert module.__name__ == name and callable(module.run_kind)
        assert isinstance(module.PARAMS, dict)
        assert all(callable(checker) for checker, _ in module.PARAMS.values())


def test_only_listed_kinds_are_imported():
    with pytest.raises(KeyError):
        kind_module("os")
