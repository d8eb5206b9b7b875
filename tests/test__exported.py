"""deepscope._exported: torch.export programs load as modules; entries that would run code are refused."""

import io
import json
import zipfile

import pytest
import torch
from torch import nn

from deepscope._exported import load_exported
from deepscope.errors import DataError, UnsafeFileError
from deepscope.io import load_model

MARKER_NAME = "unpickled-code-ran"


class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(4, 6)
        self.head = nn.Linear(6, 3)
        self.register_buffer("scale", torch.full((1,), 2.0))

    def forward(self, x):
        return self.head(torch.tanh(self.fc(x))) * self.scale


class Evil:
    """Unpickling this runs code: it writes a marker file."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (exec, (f"open({str(self.marker)!r}, 'w').write('ran')",))


def export(path, dynamic=True):
    torch.manual_seed(0)
    model = Net().eval()
    shapes = ({0: torch.export.Dim("batch")},) if dynamic else None
    torch.export.save(torch.export.export(model, (torch.randn(2, 4),), dynamic_shapes=shapes), path)
    return model


def rewrite(source, target, change):
    """Copy the archive ``source`` to ``target`` with ``change(name, bytes) -> bytes`` applied to each entry."""
    with zipfile.ZipFile(source) as archive, zipfile.ZipFile(target, "w", zipfile.ZIP_STORED) as out:
        for info in archive.infolist():
            out.writestr(info.filename, change(info.filename, archive.read(info.filename)))


def test_an_exported_program_loads_and_matches_the_model(tmp_path):
    model = export(tmp_path / "net.pt2")
    loaded = load_model(tmp_path / "net.pt2")
    x = torch.randn(7, 4)  # another batch size than the export example
    assert torch.allclose(loaded(x), model(x), atol=1e-6)
    assert not any(m.training for m in loaded.modules())  # flags set, not .eval() (unsupported on exported modules)
    assert {n for n, _ in loaded.named_parameters()} == {n for n, _ in model.named_parameters()}


def test_a_fixed_batch_size_is_refused_with_the_recipe(tmp_path):
    export(tmp_path / "fixed.pt2", dynamic=False)
    with pytest.raises(DataError, match=r"fixed batch size 2 \(input 'x'\).*Dim\('batch'\)"):
        load_model(tmp_path / "fixed.pt2")


def test_a_full_pickle_inside_the_archive_is_refused_unless_trusted(tmp_path):
    export(tmp_path / "net.pt2")
    marker = tmp_path / MARKER_NAME
    evil = io.BytesIO()
    torch.save(Evil(marker), evil)

    with zipfile.ZipFile(tmp_path / "net.pt2") as archive:
        config_name = next(n for n in archive.namelist() if n.endswith("model_weights_config.json"))
        config = json.loads(archive.read(config_name))
    entry = config["config"]["scale"]["path_name"]
    config["config"]["scale"]["use_pickle"] = True  # torch.export.load: torch.load(weights_only=False) on it

    def poison(name, data):
        if name == config_name:
            return json.dumps(config).encode()
        return evil.getvalue() if name.endswith(f"data/weights/{entry}") else data

    rewrite(tmp_path / "net.pt2", tmp_path / "evil.pt2", poison)
    expected = rf"'evil.pt2'.*entry 'data/weights/{entry}' is a full pickle.*--trust-pickle"
    with pytest.raises(UnsafeFileError, match=expected):
        load_model(tmp_path / "evil.pt2")
    assert not marker.exists()
    # the check is what stood between the file and its code: trusted, torch's loader runs it
    with pytest.raises(DataError):
        load_exported(tmp_path / "evil.pt2", trust_pickle=True, map_location="cpu")
    assert marker.read_text() == "ran"


def test_custom_objects_and_compiled_code_are_refused(tmp_path):
    export(tmp_path / "net.pt2")

    def add_object(name, data):
        if name.endswith("model_constants_config.json"):
            return json.dumps({"config": {"obj": {"path_name": "custom_obj_0", "use_pickle": True}}}).encode()
        return data

    rewrite(tmp_path / "net.pt2", tmp_path / "object.pt2", add_object)
    with pytest.raises(UnsafeFileError, match=r"pickled Python object \('custom_obj_0'\)"):
        load_model(tmp_path / "object.pt2")
    with zipfile.ZipFile(tmp_path / "net.pt2") as archive:
        root = archive.namelist()[0].split("/")[0]
    rewrite(tmp_path / "net.pt2", tmp_path / "aoti.pt2", lambda name, data: data)
    with zipfile.ZipFile(tmp_path / "aoti.pt2", "a") as archive:
        archive.writestr(f"{root}/data/aotinductor/model/model.so", b"\x7fELF")
    with pytest.raises(UnsafeFileError, match="AOTInductor package"):
        load_model(tmp_path / "aoti.pt2")


def test_files_that_are_not_export_programs(tmp_path):
    (tmp_path / "text.pt2").write_text("not an archive")
    with pytest.raises(DataError, match="'text.pt2' is not a torch.export program.*not a zip archive"):
        load_model(tmp_path / "text.pt2")
    torch.jit.save(torch.jit.script(nn.Linear(2, 2)), tmp_path / "script.pt2")
    with pytest.raises(DataError, match="'script.pt2' is not a torch.export program.*TorchScript archive"):
        load_model(tmp_path / "script.pt2")
    with zipfile.ZipFile(tmp_path / "other.pt2", "w") as archive:
        archive.writestr("other/notes.txt", "hello")
    with pytest.raises(DataError, match="'other.pt2' is not a torch.export program.*archive cannot be read"):
        load_model(tmp_path / "other.pt2")
    torch.save({"weight": torch.zeros(2)}, tmp_path / "weights.pt2")  # a checkpoint under the wrong name
    with pytest.raises(DataError, match="'weights.pt2' is not a torch.export program.*holds no program"):
        load_model(tmp_path / "weights.pt2")


class Tied(nn.Module):
    """GPT-2 style: the output layer's weight is the embedding's."""

    def __init__(self):
        super().__init__()
        self.embed = nn.Embedding(11, 4)
        self.head = nn.Linear(4, 11, bias=False)
        self.head.weight = self.embed.weight

    def forward(self, ids):
        return self.head(self.embed(ids)).mean(1)


def test_tied_weights_are_one_parameter_after_loading(tmp_path):
    torch.manual_seed(0)
    model = Tied()
    ids = torch.randint(0, 11, (2, 5))
    batch = torch.export.Dim("batch")
    torch.export.save(torch.export.export(model, (ids,), dynamic_shapes=({0: batch},)), tmp_path / "tied.pt2")
    loaded = load_model(tmp_path / "tied.pt2")
    assert loaded.head.weight is loaded.embed.weight and len(list(loaded.parameters())) == 1
    other = torch.randint(0, 11, (3, 5))
    loaded(other).sum().backward()
    model(other).sum().backward()  # oracle: the eager tied model's one gradient, from both uses
    assert torch.allclose(loaded.embed.weight.grad, model.embed.weight.grad, atol=1e-6)
