"""Architectures named by strings: the allowlist, trusted imports without the current directory,
building on the meta device, and the fit of a weights file to the model."""

from __future__ import annotations

import os
import sys

import pytest
import torch
from torch import nn

from deepscope._arch import (
    build,
    build_on_meta,
    check_fit,
    infer_builtin_kwargs,
    resolve,
    strip_common_prefix,
    without_cwd_on_path,
)
from deepscope.errors import DataError, InvalidParameterError, UnsafeFileError


def test_the_allowlist_resolves_without_importing():
    factory, allowed = resolve("torch.nn:Linear", trust_code=False, named_by="model.json")
    assert factory is nn.Linear and allowed
    with pytest.raises(InvalidParameterError, match="an nn.Module class of torch.nn"):
        resolve("torch.nn.functional:relu", trust_code=False, named_by=None)
    with pytest.raises(InvalidParameterError, match="dotted Python names"):
        resolve("os; rm -rf:x", trust_code=False, named_by=None)


def test_other_modules_need_trust_and_named_factories_must_be_classes():
    with pytest.raises(UnsafeFileError, match="'model.json' names the architecture 'collections:OrderedDict'"):
        resolve("collections:OrderedDict", trust_code=False, named_by="model.json")
    with pytest.raises(UnsafeFileError, match="not an nn.Module class"):
        resolve("collections:OrderedDict", trust_code=True, named_by="model.json")
    factory, allowed = resolve("collections:OrderedDict", trust_code=True, named_by=None)  # the caller vouches
    assert factory.__name__ == "OrderedDict" and not allowed
    with pytest.raises(InvalidParameterError, match="naming an importable module"):
        resolve("no_such_module_xyz:Net", trust_code=True, named_by=None)


def test_the_current_directory_is_never_searched_for_a_module_a_file_names(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "shadow_module_xyz.py").write_text("raise SystemExit('imported from the working directory')")
    monkeypatch.setattr(sys, "path", ["", ".", str(tmp_path), *sys.path])
    with without_cwd_on_path():
        assert "" not in sys.path and str(tmp_path) not in sys.path and os.getcwd() == str(tmp_path)
    assert sys.path[:3] == ["", ".", str(tmp_path)]  # restored
    with pytest.raises(InvalidParameterError, match="importable module"):
        resolve("shadow_module_xyz:Net", trust_code=True, named_by="model.json")


def test_a_module_you_name_is_found_in_the_current_directory_only_with_trust(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "path", [p for p in sys.path if p not in ("", ".", str(tmp_path))])
    (tmp_path / "h6_cwd_factory.py").write_text(
        "import torch\nIMPORTED = True\ndef build(width=3):\n    return torch.nn.Linear(2, width)\n"
    )
    monkeypatch.delitem(sys.modules, "h6_cwd_factory", raising=False)
    with pytest.raises(UnsafeFileError, match="did not import.*trust_code=True"):
        resolve("h6_cwd_factory:build", trust_code=False, named_by=None)
    assert "h6_cwd_factory" not in sys.modules  # refused before any import
    factory, allowed = resolve("h6_cwd_factory:build", trust_code=True, named_by=None)
    assert not allowed and factory(width=5).out_features == 5
    assert str(tmp_path) not in sys.path  # the directory was on the path for the import only
    monkeypatch.delitem(sys.modules, "h6_cwd_factory")
    (tmp_path / "h6_cwd_broken.py").write_text("raise ValueError('bad config in user code')\n")
    with pytest.raises(DataError, match="Importing module 'h6_cwd_broken'.*ValueError: bad config in user code"):
        resolve("h6_cwd_broken:build", trust_code=True, named_by=None)


def _cnn1d_shapes(**options):
    from deepscope.models import build as build_builtin

    model = build_builtin("cnn1d", (4, 30), 3, **options)
    return model, {name: tuple(t.shape) for name, t in model.state_dict().items()}


@pytest.mark.parametrize(
    "options",
    [
        {},
        {"channels": [8, 16, 4], "kernel_size": 3, "hidden": 0, "batch_norm": False},
        {"channels": [6], "hidden": 12, "pooling": "mean"},
    ],
)
def test_cnn1d_options_are_read_from_the_weights(options):
    model, shapes = _cnn1d_shapes(**options)
    given = {"input_shape": [4, 30], **({"pooling": options["pooling"]} if "pooling" in options else {})}
    inferred = infer_builtin_kwargs("cnn1d", shapes, given)
    rebuilt = build("cnn1d", inferred, "cnn1d")
    assert {n: tuple(t.shape) for n, t in rebuilt.state_dict().items()} == shapes
    rebuilt.load_state_dict(model.state_dict())
    x = torch.randn(5, 4, 30)
    assert torch.equal(rebuilt.eval()(x), model.eval()(x))  # the same network, not just the same shapes
    prefixed = {f"model.{name}": shape for name, shape in shapes.items()}  # Lightning's wrapper prefix
    assert infer_builtin_kwargs("cnn1d", prefixed, given) == inferred


def test_cnn1d_inference_keeps_given_values_and_names_what_weights_cannot_tell():
    _, shapes = _cnn1d_shapes(channels=[6], pooling="max")
    with pytest.raises(DataError, match="cannot tell max from mean.*--arch-kwargs"):
        infer_builtin_kwargs("cnn1d", shapes, {"input_shape": [4, 30]})
    assert (
        infer_builtin_kwargs("cnn1d", shapes, {"input_shape": [4, 30], "pooling": "max", "kernel_size": 7})[
            "kernel_size"
        ]
        == 7
    )  # given values win (check_fit then reports the mismatch)
    assert infer_builtin_kwargs("mlp", shapes, {"a": 1}) == {"a": 1}  # other built-ins: nothing inferred
    assert infer_builtin_kwargs("cnn1d", {"weight": (3, 4)}, {}) == {}  # not a CNN1d's weights


def test_build_and_build_on_meta():
    model = build("mlp", {"input_shape": [4], "num_classes": 3, "widths": [5]}, "mlp")
    assert model(torch.randn(2, 4)).shape == (2, 3)
    with pytest.raises(InvalidParameterError, match="the input_shape and num_classes that built-in arch 'mlp' needs"):
        build("mlp", {}, "mlp")
    with pytest.raises(InvalidParameterError, match="keyword arguments that Linear accepts"):
        build(nn.Linear, {"size": 3}, "Linear")
    meta = build_on_meta(nn.Linear, {"in_features": 10**6, "out_features": 10**6}, "Linear", required=True)
    assert meta.weight.device.type == "meta"  # a 4 TB layer described, nothing allocated

    def computes_while_building():
        layer = nn.Linear(2, 2)
        layer.weight.data.normal_().item()  # needs real storage
        return layer

    assert build_on_meta(computes_while_building, {}, "f", required=False) is None


def test_check_fit_names_the_first_mismatch_and_fills_tied_weights():
    model = nn.Sequential(nn.Linear(3, 4), nn.Linear(4, 3))
    shapes = {"0.weight": (4, 3), "0.bias": (4,), "1.weight": (3, 4), "1.bias": (3,)}
    assert check_fit(model, shapes, "w.safetensors", "arch") == {}
    with pytest.raises(DataError, match=r"Weight '1.weight' in 'w.safetensors' has shape \(4, 4\)"):
        check_fit(model, {**shapes, "1.weight": (4, 4)}, "w.safetensors", "arch")
    with pytest.raises(DataError, match="missing '1.bias'; unexpected 'extra'"):
        check_fit(model, {**{k: v for k, v in shapes.items() if k != "1.bias"}, "extra": (1,)}, "w", "arch")
    with pytest.raises(DataError, match="declares .* of weights, but 'w' holds only 10 bytes"):
        check_fit(
            build_on_meta(nn.Linear, {"in_features": 4096, "out_features": 4096}, "L", required=True),
            {},
            "w",
            "L",
            file_bytes=10,
        )
    tied = nn.Sequential(nn.Linear(3, 3, bias=False), nn.Linear(3, 3, bias=False))
    tied[1].weight = tied[0].weight
    assert check_fit(tied, {"0.weight": (3, 3)}, "w", "arch") == {"1.weight": "0.weight"}


def test_strip_common_prefix():
    expected = {"0.weight": None, "0.bias": None}
    assert strip_common_prefix(["model.0.weight", "model.0.bias"], expected) == "model."
    assert strip_common_prefix(["0.weight"], expected) == ""
    assert strip_common_prefix(["a.x", "b.y"], expected) == "" and strip_common_prefix([], expected) == ""
