"""deepscope.io: safetensors round trips, weights-only checkpoints, TorchScript, and pickle refusal."""

import json
import warnings

import pytest
import torch
from torch import nn

from deepscope.errors import DataError, InvalidParameterError, UnsafeFileError
from deepscope.io import load_model, save_model


class TinyNet(nn.Module):
    def __init__(self, width: int = 5, classes: int = 3):
        super().__init__()
        self.fc = nn.Linear(4, width)
        self.norm = nn.BatchNorm1d(width)
        self.head = nn.Linear(width, classes)

    def forward(self, x):
        return self.head(torch.relu(self.norm(self.fc(x))))


def make_net(width: int = 5, classes: int = 3) -> nn.Module:
    return TinyNet(width, classes)


class TiedNet(nn.Module):
    def __init__(self):
        super().__init__()
        self.encoder = nn.Linear(3, 3, bias=False)
        self.decoder = nn.Linear(3, 3, bias=False)
        self.decoder.weight = self.encoder.weight

    def forward(self, x):
        return self.decoder(self.encoder(x))


FACTORY = f"{__name__}:make_net"
CLASS = f"{__name__}:TinyNet"


def _trained_net():
    net = make_net(width=6)
    net.train()
    net(torch.randn(16, 4))  # moves BatchNorm running statistics away from their defaults
    return net


def _same_outputs(a, b):
    x = torch.randn(8, 4)
    a.eval()
    return torch.equal(a(x), b(x))


def test_safetensors_round_trip_with_module_class_and_config(tmp_path):
    net = _trained_net()
    path = save_model(net, tmp_path / "net", arch=CLASS, arch_kwargs={"width": 6})
    assert path == tmp_path / "net.safetensors"
    config = json.loads((tmp_path / "net.json").read_text())
    assert config == {"format": "deepscope-model", "version": 1, "arch": CLASS, "arch_kwargs": {"width": 6}}
    with pytest.raises(UnsafeFileError, match="trust_code=True"):
        load_model(path)  # the config names a module outside torch.nn and deepscope.models
    loaded = load_model(path, trust_code=True)
    assert isinstance(loaded, TinyNet) and not loaded.training
    for name, tensor in net.state_dict().items():  # parameters and buffers, bit for bit
        assert torch.equal(tensor, loaded.state_dict()[name]), name
    assert _same_outputs(net, loaded)
    assert isinstance(load_model(tmp_path / "net.json", trust_code=True), TinyNet)  # the config path works too


def test_function_factory_named_by_a_file_needs_the_callers_consent(tmp_path):
    path = save_model(make_net(width=6), tmp_path / "fn", arch=FACTORY, arch_kwargs={"width": 6})
    with pytest.raises(UnsafeFileError, match="not an nn.Module class; .* pass arch="):
        load_model(path, trust_code=True)
    assert (
        load_model(path, arch=FACTORY, trust_code=True).fc.out_features == 6
    )  # the caller names it: trusted, config kwargs kept


def test_config_cannot_make_deepscope_run_a_command(tmp_path):
    marker = tmp_path / "pwned"
    path = save_model(make_net(), tmp_path / "evil")
    config = {"format": "deepscope-model", "version": 1, "arch": "subprocess:getoutput",
              "arch_kwargs": {"cmd": f"touch {marker}"}}  # fmt: skip
    (tmp_path / "evil.json").write_text(json.dumps(config))
    with pytest.raises(UnsafeFileError, match="'evil.json' names the architecture 'subprocess:getoutput' from module"):
        load_model(path)  # a module outside the allowlist: not even imported
    with pytest.raises(UnsafeFileError, match="'evil.json' names the factory 'subprocess:getoutput'"):
        load_model(path, trust_code=True)  # trusted module, but a file may only name nn.Module classes
    assert not marker.exists()


def test_save_refuses_to_overwrite(tmp_path):
    net = make_net()
    save_model(net, tmp_path / "m.safetensors", arch=CLASS)
    with pytest.raises(InvalidParameterError, match="already exists; pass overwrite=True"):
        save_model(net, tmp_path / "m.safetensors", arch=CLASS)
    save_model(make_net(width=2), tmp_path / "m.safetensors", arch=CLASS, arch_kwargs={"width": 2}, overwrite=True)
    assert load_model(tmp_path / "m.safetensors", trust_code=True).fc.out_features == 2
    with pytest.raises(InvalidParameterError, match="'path' parameter of save_model"):
        save_model(net, tmp_path / "m.pt")
    with pytest.raises(InvalidParameterError, match="'arch_kwargs' parameter of save_model"):
        save_model(net, tmp_path / "other", arch=FACTORY, arch_kwargs={"width": object()})
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.json", "m.safetensors"]  # no temporary files left


def test_builtin_architecture_round_trip(tmp_path):
    from deepscope import models

    net = models.build("mlp", (4,), 3)
    path = save_model(net, tmp_path / "mlp")  # the arch comes from net.deepscope_config
    assert json.loads((tmp_path / "mlp.json").read_text())["arch"] == "mlp"
    loaded = load_model(path)
    assert type(loaded) is type(net) and _same_outputs(net, loaded)
    (tmp_path / "mlp.json").unlink()
    with pytest.raises(InvalidParameterError, match="input_shape and num_classes"):
        load_model(path, arch="mlp")
    assert _same_outputs(net, load_model(path, arch="mlp", arch_kwargs={"input_shape": [4], "num_classes": 3}))


def test_weights_without_architecture_ask_for_arch(tmp_path):
    path = save_model(make_net(), tmp_path / "bare")
    assert json.loads((tmp_path / "bare.json").read_text())["arch"] is None
    with pytest.raises(DataError, match="needs the architecture: pass arch='package.module:factory'"):
        load_model(path)
    assert isinstance(load_model(path, arch=FACTORY, trust_code=True), TinyNet)
    assert isinstance(load_model(path, arch=make_net), TinyNet)  # a callable works as well


def test_shape_mismatch_names_the_weight_and_both_shapes(tmp_path):
    path = save_model(make_net(width=6), tmp_path / "w6", arch=FACTORY, arch_kwargs={"width": 6})
    with pytest.raises(
        DataError, match=r"Weight 'fc.weight' in 'w6.safetensors' has shape \(6, 4\) .* expects \(5, 4\)"
    ):
        load_model(path, arch=FACTORY, arch_kwargs={"width": 5}, trust_code=True)


def test_missing_and_unexpected_weights(tmp_path):
    path = tmp_path / "partial.pt"
    state = make_net().state_dict()
    state.pop("head.bias")
    state["extra.weight"] = torch.zeros(1)
    torch.save(state, path)
    with pytest.raises(DataError, match="missing 'head.bias'; unexpected 'extra.weight'"):
        load_model(path, arch=FACTORY, trust_code=True)


def test_state_dict_checkpoints_plain_nested_and_prefixed(tmp_path):
    net = _trained_net()
    plain = tmp_path / "plain.pth"
    torch.save(net.state_dict(), plain)
    assert _same_outputs(net, load_model(plain, arch=FACTORY, arch_kwargs={"width": 6}, trust_code=True))
    lightning = tmp_path / "epoch=3.ckpt"
    torch.save({"epoch": 3, "state_dict": {f"model.{k}": v for k, v in net.state_dict().items()}}, lightning)
    assert _same_outputs(net, load_model(lightning, arch=FACTORY, arch_kwargs={"width": 6}, trust_code=True))
    with pytest.raises(DataError, match="holds weights only"):
        load_model(plain)
    junk = tmp_path / "junk.pt"
    torch.save({"epoch": 3}, junk)
    with pytest.raises(DataError, match="neither a module nor a state_dict"):
        load_model(junk, arch=FACTORY, trust_code=True)


def test_full_pickled_module_needs_trust(tmp_path):
    net = _trained_net()
    path = tmp_path / "whole.pt"
    torch.save(net, path)
    with pytest.raises(UnsafeFileError, match="full pickle that imports .*TinyNet.*trust_pickle=True"):
        load_model(path)
    loaded = load_model(path, trust_pickle=True)
    assert isinstance(loaded, TinyNet) and _same_outputs(net, loaded)


class MaliciousPayload:
    """Unpickling this object calls exec(), which creates a marker file: a stand-in for any attack."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (exec, (f"open({self.marker!r}, 'w').close()",))


def test_malicious_pickle_is_not_executed_by_default(tmp_path):
    marker = tmp_path / "pwned"
    path = tmp_path / "checkpoint.pt"
    torch.save({"state_dict": MaliciousPayload(marker)}, path)
    assert not marker.exists()
    with pytest.raises(UnsafeFileError, match="full pickle that imports exec"):
        load_model(path, arch=FACTORY, trust_code=True)
    assert not marker.exists()  # refused before any code ran
    # opting in really does unpickle (and so runs the payload): the flag is what protects users
    with pytest.raises(DataError, match="neither a module nor a state_dict"):
        load_model(path, arch=FACTORY, trust_pickle=True, trust_code=True)
    assert marker.exists()


def test_torchscript_archive(tmp_path):
    net = _trained_net().eval()
    path = tmp_path / "scripted.pt"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        torch.jit.save(torch.jit.script(net), path)
    loaded = load_model(path)
    x = torch.randn(8, 4)
    assert torch.equal(loaded(x), net(x)) and not loaded.training


def test_tied_weights_and_float64_survive(tmp_path):
    tied = TiedNet()
    path = save_model(tied, tmp_path / "tied", arch=f"{__name__}:TiedNet")
    loaded = load_model(path, trust_code=True)
    assert loaded.decoder.weight is loaded.encoder.weight and torch.equal(loaded.encoder.weight, tied.encoder.weight)
    double = make_net().double()
    path = save_model(double, tmp_path / "double", arch=CLASS)
    loaded = load_model(path, trust_code=True)
    assert loaded.fc.weight.dtype == torch.float64 and torch.equal(loaded.fc.weight, double.fc.weight)


def test_path_and_arch_errors(tmp_path):
    with pytest.raises(DataError, match="does not exist"):
        load_model(tmp_path / "nope.safetensors")
    with pytest.raises(DataError, match="is a directory"):
        load_model(tmp_path)
    wrong = tmp_path / "model.onnx"
    wrong.write_bytes(b"\x00")
    with pytest.raises(DataError, match="must end in .safetensors, .json, .pt"):
        load_model(wrong)
    corrupt = tmp_path / "corrupt.safetensors"
    corrupt.write_bytes(b"not a safetensors file")
    with pytest.raises(DataError, match="Cannot read 'corrupt.safetensors' as safetensors"):
        load_model(corrupt, arch=FACTORY, trust_code=True)
    path = save_model(make_net(), tmp_path / "ok")
    with pytest.raises(InvalidParameterError, match="importable module"):
        load_model(path, arch="no_such_package.nowhere:make", trust_code=True)
    with pytest.raises(UnsafeFileError, match="The 'arch' parameter of load_model names 'no_such_package"):
        load_model(path, arch="no_such_package.nowhere:make")
    with pytest.raises(InvalidParameterError, match="factory that exists"):
        load_model(path, arch=f"{__name__}:missing_factory", trust_code=True)
    with pytest.raises(InvalidParameterError, match="'arch_kwargs' parameter of load_model"):
        load_model(path, arch=FACTORY, arch_kwargs={"depth": 3}, trust_code=True)
    newer = tmp_path / "ok.json"
    newer.write_text(json.dumps({"format": "deepscope-model", "version": 99, "arch": FACTORY}))
    with pytest.raises(DataError, match="config version 99"):
        load_model(path)
    garbage = tmp_path / "garbage.pt"
    garbage.write_bytes(b"garbage bytes")
    with pytest.raises(DataError, match="'garbage.pt' is not a model file"):
        load_model(garbage, arch=FACTORY, trust_code=True)  # not a pickle to refuse: not a checkpoint at all
    with pytest.raises(DataError, match="'garbage.pt' is not a model file"):
        load_model(garbage, arch=FACTORY, trust_pickle=True, trust_code=True)


def test_save_does_not_modify_the_model(tmp_path):
    net = _trained_net()
    before = {k: v.clone() for k, v in net.state_dict().items()}
    save_model(net, tmp_path / "n", arch=FACTORY, arch_kwargs={"width": 6})
    assert net.training and all(torch.equal(before[k], v) for k, v in net.state_dict().items())


# ----------------------------------------------------------------------------------- issue 13: hardening
def _config(path, arch, arch_kwargs=None):
    config = {"format": "deepscope-model", "version": 1, "arch": arch, "arch_kwargs": arch_kwargs or {}}
    path.with_suffix(".json").write_text(json.dumps(config))


def test_stdlib_module_named_by_a_config_is_not_imported(tmp_path):
    import sys

    sys.modules.pop("this", None)  # `import this` prints the Zen of Python: an import side effect
    path = save_model(nn.Linear(4, 2), tmp_path / "zen", arch="torch.nn:Linear")
    _config(path, "this:Zen")
    with pytest.raises(UnsafeFileError, match="'zen.json' names the architecture 'this:Zen'.*trust_code=True"):
        load_model(path)
    assert "this" not in sys.modules


def test_module_on_sys_path_runs_no_code_without_trust_code(tmp_path, monkeypatch):
    import sys

    marker = tmp_path / "imported"
    (tmp_path / "evil_arch_module.py").write_text(f"open({str(marker)!r}, 'w').close()\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    path = save_model(nn.Linear(4, 2), tmp_path / "m", arch="torch.nn:Linear")
    _config(path, "evil_arch_module:Net")
    with pytest.raises(UnsafeFileError, match="did not import it"):
        load_model(path)
    with pytest.raises(UnsafeFileError, match="did not import it"):
        load_model(path, arch="evil_arch_module:Net")  # named by the caller: still needs trust_code
    assert not marker.exists() and "evil_arch_module" not in sys.modules


def test_trusted_import_searches_the_current_directory_only_for_an_arch_you_name(tmp_path, monkeypatch):
    import sys

    marker = tmp_path / "imported"
    (tmp_path / "cwd_arch_module.py").write_text(
        f"import torch\nopen({str(marker)!r}, 'w').close()\nclass Net(torch.nn.Linear):\n"
        "    def __init__(self, width=2):\n        super().__init__(4, width)\n"
    )
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "path", [p for p in sys.path if p not in ("", ".", str(tmp_path))])
    monkeypatch.delitem(sys.modules, "cwd_arch_module", raising=False)
    path = save_model(nn.Linear(4, 3), tmp_path / "m", arch="cwd_arch_module:Net", arch_kwargs={"width": 3})
    monkeypatch.syspath_prepend("")  # what `python -m` and an interactive session put first
    # named by the file: never from the current directory, even trusted (a .py shipped with the weights)
    with pytest.raises(InvalidParameterError, match="importable module"):
        load_model(path, trust_code=True)
    assert not marker.exists() and "cwd_arch_module" not in sys.modules
    assert "" in sys.path  # restored afterwards
    # named by you and trusted: found in the current directory, the file's arch_kwargs apply
    model = load_model(path, arch="cwd_arch_module:Net", trust_code=True)
    assert marker.exists() and model.out_features == 3
    assert load_model(path, arch="cwd_arch_module:Net", trust_code=True, arch_kwargs={"width": 3}).out_features == 3


def test_torch_nn_and_builtin_architectures_need_no_trust(tmp_path):
    linear = nn.Linear(4, 2)
    path = save_model(
        linear, tmp_path / "lin", arch="torch.nn:Linear", arch_kwargs={"in_features": 4, "out_features": 2}
    )
    assert torch.equal(load_model(path).weight, linear.weight)
    _config(path, "torch.nn.modules.linear:Linear", {"in_features": 4, "out_features": 2})
    assert isinstance(load_model(path), nn.Linear)
    _config(path, "torch.nn:init.normal_", {})  # a function of torch.nn is not a module class
    with pytest.raises(InvalidParameterError, match="an nn.Module class of torch.nn"):
        load_model(path)
    with pytest.raises(InvalidParameterError, match="dotted Python names"):
        load_model(path, arch="../evil:Net")


def test_declared_size_is_checked_before_allocation(tmp_path):
    path = save_model(nn.Linear(100, 100), tmp_path / "small", arch="torch.nn:Linear",
                      arch_kwargs={"in_features": 100, "out_features": 100})  # fmt: skip
    assert path.stat().st_size < 64 * 1024
    # 2**20 x 2**17 float32 weights: 512 GB, built on the meta device only
    _config(path, "torch.nn:Linear", {"in_features": 2**20, "out_features": 2**17})
    with pytest.raises(DataError, match=r"declares 512\.0 GB of weights, but 'small.safetensors' holds only 39\.\d KB"):
        load_model(path)
    state = tmp_path / "state.pt"
    torch.save(nn.Linear(100, 100).state_dict(), state)
    with pytest.raises(DataError, match=r"declares 512\.0 GB"):
        load_model(state, arch="torch.nn:Linear", arch_kwargs={"in_features": 2**20, "out_features": 2**17})
    _config(path, "mlp", {"input_shape": [2**30], "num_classes": 10})  # a built-in name as well
    with pytest.raises(DataError, match="GB of weights"):
        load_model(path)


def test_text_file_named_pt_is_not_a_model_file(tmp_path):
    text = tmp_path / "model.pt"
    text.write_text("this is a text file, not a checkpoint\n")
    for trust in (False, True):
        with pytest.raises(DataError, match="'model.pt' is not a model file"):
            load_model(text, arch="torch.nn:Linear", trust_pickle=trust)


_SPECIAL_FILES_SCRIPT = """
import os, sys
from deepscope.io import load_model
from deepscope.errors import DeepscopeError
for path in sys.argv[1:]:
    try:
        load_model(path, arch="torch.nn:Linear")
        print("loaded", path)
    except DeepscopeError as error:
        print(type(error).__name__, error)
"""


def test_fifo_and_dev_zero_are_refused_without_hanging(tmp_path):
    import os
    import subprocess
    import sys

    fifo = tmp_path / "pipe.safetensors"
    os.mkfifo(fifo)
    zero = tmp_path / "zero.pt"
    zero.symlink_to("/dev/zero")
    config = tmp_path / "conf.json"
    os.mkfifo(config)
    # in a subprocess, so that a regression hangs or fills that process, not the test run; the
    # timeout only turns such a hang into a failure, nothing is measured
    result = subprocess.run(
        [sys.executable, "-c", _SPECIAL_FILES_SCRIPT, str(fifo), str(zero), str(config)],
        capture_output=True, text=True, timeout=300, check=False,
    )  # fmt: skip
    lines = result.stdout.splitlines()
    assert len(lines) == 3, result.stderr
    assert lines[0].startswith("DataError Model file") and "is not a regular file (it is a FIFO" in lines[0]
    assert "is not a regular file (it is a character device)" in lines[1]
    assert "is not a regular file (it is a FIFO" in lines[2]


def test_stale_temporaries_of_a_killed_save_are_removed(tmp_path):
    stale = tmp_path / ".deepscope-tmp-m.safetensors.k1ll3d00.tmp"
    stale.write_bytes(b"half a file")
    save_model(
        nn.Linear(2, 1), tmp_path / "m", arch="torch.nn:Linear", arch_kwargs={"in_features": 2, "out_features": 1}
    )
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.json", "m.safetensors"]
