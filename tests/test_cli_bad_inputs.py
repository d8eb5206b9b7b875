"""The command line under bad input: every case exits 2 with exactly one ``error:`` line and no traceback.

Bad files (FIFOs, devices, text named .pt, hostile configs), bad option values (non-finite numbers,
huge index ranges, shapes), bad data and bad paths. Each case names the key words its message must
contain. Cases run in-process through ``deepscope.cli.main``; the few that need a real process
(the current directory on ``sys.path``) use ``python -m deepscope``.
"""

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner

from deepscope.cli import main


@pytest.fixture(scope="module")
def paths(tmp_path_factory):
    """Every file the cases refer to, as ``{name}`` placeholders."""
    from deepscope.io import save_model
    from deepscope.models import build

    root = tmp_path_factory.mktemp("bad_inputs")
    torch.manual_seed(0)
    rng = np.random.default_rng(0)
    x = rng.normal(size=(40, 4)).astype(np.float32)
    y = np.arange(40) % 3
    p = {"root": root, "model": save_model(build("mlp", (4,), 3), root / "model.safetensors")}
    np.savez(root / "data.npz", x=x, y=y)
    p["data"] = root / "data.npz"
    nan_x = x.copy()
    nan_x[7, 2] = np.nan
    np.savez(root / "nan.npz", x=nan_x, y=y)
    np.savez(root / "labels.npz", x=x, y=np.arange(40) % 10)  # 10 classes, a model with 3 outputs
    np.savez(root / "empty.npz", x=np.zeros((0, 4), np.float32), y=np.zeros((0,), np.int64))
    np.savez(root / "nox.npz", y=y)
    (root / "header.csv").write_text("a,b,label\n")
    (root / "words.csv").write_text("a,b,label\n1,2,0\n3,red,1\n")
    (root / "pickle.npz").write_bytes(b"not a zip at all")
    os.mkfifo(root / "fifo.csv")
    os.mkfifo(root / "fifo.safetensors")
    os.mkfifo(root / "history_fifo.json")
    (root / "zero.pt").symlink_to("/dev/zero")
    (root / "zero.npz").symlink_to("/dev/zero")
    (root / "text.pt").write_text("these are my notes, not a checkpoint\n")
    (root / "garbage.safetensors").write_bytes(b"garbage")
    (root / "model.onnx").write_bytes(b"\x08\x01")
    (root / "adir").mkdir()
    torch.save(build("mlp", (4,), 3), root / "pickled.pt")
    bare = save_model(build("mlp", (4,), 3), root / "bare", arch=None)
    config = json.loads((root / "bare.json").read_text())
    config["arch"] = None
    (root / "bare.json").write_text(json.dumps(config))
    p["bare"] = bare
    for name, arch, kwargs in [
        ("evil", "evil_module_in_folder:Net", {}),
        ("command", "subprocess:getoutput", {"cmd": "true"}),
        ("huge", "torch.nn:Linear", {"in_features": 2**20, "out_features": 2**17}),
        ("builtin", "mlp", {"input_shape": [4], "num_classes": 3}),
    ]:
        save_model(build("mlp", (4,), 3), root / name)
        (root / f"{name}.json").write_text(json.dumps({"format": "deepscope-model", "version": 1, "arch": arch,
                                                        "arch_kwargs": kwargs}))  # fmt: skip
    save_model(build("mlp", (4,), 3), root / "foreign")
    (root / "foreign.json").write_text(json.dumps({"format": "keras", "arch": "mlp"}))
    save_model(build("mlp", (4,), 3), root / "future")
    (root / "future.json").write_text(json.dumps({"format": "deepscope-model", "version": 99, "arch": "mlp"}))
    save_model(build("mlp", (4,), 3), root / "broken")
    (root / "broken.json").write_text("{not json")
    (root / "afile").write_text("x")
    (root / "user").mkdir()
    (root / "user" / "report.html").write_text("<html>my notes</html>")
    (root / "user_train").mkdir()
    (root / "user_train" / "model.safetensors").write_bytes(b"mine")
    (root / "history_bad.json").write_text("[1, 2]")
    (root / "history_text.json").write_text("not json")
    history = {"generator": "deepscope", "data": str(root / "data.npz"), "seed": 0, "learning_rate": 0.001,
               "history": {}}  # fmt: skip
    (root / "trained").mkdir()
    save_model(build("mlp", (4,), 3), root / "trained" / "model")
    (root / "trained" / "history.json").write_text(json.dumps(history))
    # ---- the user's own architecture (issue 12, item 5)
    batch = torch.export.Dim("batch")
    mlp = build("mlp", (4,), 3).eval()
    torch.export.save(torch.export.export(mlp, (torch.randn(2, 4),)), root / "fixed.pt2")  # batch size fixed at 2
    torch.export.save(torch.export.export(mlp, (torch.randn(2, 4),), dynamic_shapes=({0: batch},)), root / "ok.pt2")
    (root / "text.pt2").write_text("an exported program, honestly\n")
    torch.jit.save(torch.jit.script(mlp), root / "script.ts")
    torch.save(build("mlp", (4,), 3).state_dict(), root / "weights.pt2")
    hf_config = {"model_type": "bert", "architectures": ["BertForSequenceClassification"], "vocab_size": 10}
    for name, extra in (("remote", {"auto_map": {"AutoModel": "modeling_x.Net"}}), ("noweights", {})):
        (root / name).mkdir()
        (root / name / "config.json").write_text(json.dumps({**hf_config, **extra}))
    (root / "noweights" / "pytorch_model.bin").write_bytes(b"\x80\x02")
    np.savez(root / "seq.npz", x=rng.normal(size=(40, 4, 16)).astype(np.float32), y=y)
    torch.save(build("cnn1d", (4, 16), 3, channels=[6], pooling="max").state_dict(), root / "pooled.pt")
    return {key: str(value) for key, value in p.items()} | {"root": str(root)}


AUDIT = ["audit", "--sections", "model_card"]
EXPLAIN = ["explain", "--model", "{model}", "--data", "{data}", "--out", "{root}/explain_out"]
TRAIN = ["train", "--data", "{data}", "--out", "{root}/train_out"]

CASES = [
    # ---- bad files
    ("missing model", [*AUDIT, "--model", "{root}/nope.safetensors", "--data", "{data}"], ["does not exist"]),
    ("model is a directory", [*AUDIT, "--model", "{root}/adir", "--data", "{data}"], ["is a directory"]),
    ("model is a FIFO", [*AUDIT, "--model", "{root}/fifo.safetensors", "--data", "{data}"], ["not a regular file", "FIFO"]),
    ("model is /dev/zero", [*AUDIT, "--model", "{root}/zero.pt", "--data", "{data}"], ["not a regular file", "character device"]),
    ("text named .pt", [*AUDIT, "--model", "{root}/text.pt", "--data", "{data}", "--arch", "mlp"], ["'text.pt' is not a model file"]),
    ("text .pt trusted", [*AUDIT, "--model", "{root}/text.pt", "--data", "{data}", "--trust-pickle"], ["not a model file"]),
    ("corrupt safetensors", [*AUDIT, "--model", "{root}/garbage.safetensors", "--data", "{data}", "--arch", "mlp"], ["as safetensors"]),
    ("unsupported suffix", [*AUDIT, "--model", "{root}/model.onnx", "--data", "{data}"], ["must end in"]),
    ("full pickle", [*AUDIT, "--model", "{root}/pickled.pt", "--data", "{data}"], ["Refusing to load", "--trust-pickle"]),
    ("bare weights", [*AUDIT, "--model", "{bare}", "--data", "{data}"], ["needs the architecture", "--arch", "--input-shape"]),
    ("config names a foreign module", [*AUDIT, "--model", "{root}/evil.safetensors", "--data", "{data}"], ["evil.json", "did not import", "--trust-code"]),
    ("config names a function", [*AUDIT, "--model", "{root}/command.safetensors", "--data", "{data}", "--trust-code"], ["not an nn.Module class"]),
    ("config declares 512 GB", [*AUDIT, "--model", "{root}/huge.safetensors", "--data", "{data}"], ["declares 512.0 GB", "nothing was allocated"]),
    ("config of another tool", [*AUDIT, "--model", "{root}/foreign.safetensors", "--data", "{data}"], ["not a deepscope model config"]),
    ("config from the future", [*AUDIT, "--model", "{root}/future.safetensors", "--data", "{data}"], ["config version 99"]),
    ("config not JSON", [*AUDIT, "--model", "{root}/broken.safetensors", "--data", "{data}"], ["Cannot read model config"]),
    ("init is text", [*AUDIT, "--model", "{model}", "--data", "{data}", "--init", "{root}/text.pt"], ["not a model file"]),
    ("history is a FIFO", [*AUDIT, "--model", "{model}", "--data", "{data}", "--history", "{root}/history_fifo.json"], ["not a regular file"]),
    ("history not JSON", [*AUDIT, "--model", "{model}", "--data", "{data}", "--history", "{root}/history_text.json"], ["not a JSON file"]),
    ("history of the wrong kind", [*AUDIT, "--model", "{model}", "--data", "{data}", "--history", "{root}/history_bad.json"], ["not a history.json"]),
    ("history missing", [*AUDIT, "--model", "{model}", "--data", "{data}", "--history", "{root}/none.json"], ["does not exist"]),
    # ---- bad architectures and shapes
    ("arch from a foreign module", [*AUDIT, "--model", "{bare}", "--data", "{data}", "--arch", "os:system"], ["did not import", "--trust-code"]),
    ("arch with a path", [*AUDIT, "--model", "{bare}", "--data", "{data}", "--arch", "../evil:Net", "--trust-code"], ["dotted Python names"]),
    ("arch is a torch.nn function", [*AUDIT, "--model", "{bare}", "--data", "{data}", "--arch", "torch.nn:init.normal_"], ["nn.Module class of torch.nn"]),
    ("unknown built-in arch", [*AUDIT, "--model", "{bare}", "--data", "{data}", "--arch", "vgg99"], ["vgg99"]),
    ("wrong input shape", [*AUDIT, "--model", "{bare}", "--data", "{data}", "--arch", "mlp", "--input-shape", "5"], ["has shape", "expects"]),
    ("wrong classes", [*AUDIT, "--model", "{bare}", "--data", "{data}", "--arch", "mlp", "--classes", "7"], ["has shape", "expects"]),
    ("input shape not ints", [*AUDIT, "--model", "{bare}", "--data", "{data}", "--arch", "mlp", "--input-shape", "1,x"], ["not a shape"]),
    ("input shape with 0", [*AUDIT, "--model", "{bare}", "--data", "{data}", "--arch", "mlp", "--input-shape", "0,3"], [">= 1"]),
    ("classes 0", [*AUDIT, "--model", "{bare}", "--data", "{data}", "--arch", "mlp", "--classes", "0"], ["--classes"]),
    # ---- the user's own architecture (issue 12, item 5)
    ("module in the current directory without --trust-code", [*AUDIT, "--model", "{bare}", "--data", "{data}", "--arch", "mynet:Net"], ["mynet", "did not import", "--trust-code"]),
    ("arch-kwargs not JSON", [*AUDIT, "--model", "{bare}", "--data", "{data}", "--arch", "mlp", "--arch-kwargs", "{{widths: [8]}}"], ["--arch-kwargs", "is not JSON"]),
    ("arch-kwargs not an object", [*AUDIT, "--model", "{bare}", "--data", "{data}", "--arch", "mlp", "--arch-kwargs", "[8]"], ["--arch-kwargs", "not an object"]),
    ("arch-kwargs with NaN", [*AUDIT, "--model", "{bare}", "--data", "{data}", "--arch", "mlp", "--arch-kwargs", '{{"dropout": NaN}}'], ["NaN is not a finite number"]),
    ("arch-kwargs the arch refuses", [*AUDIT, "--model", "{bare}", "--data", "{data}", "--arch", "mlp", "--arch-kwargs", '{{"colour": "red"}}'], ["options the architecture accepts", "colour"]),
    ("arch-kwargs against --classes", [*AUDIT, "--model", "{bare}", "--data", "{data}", "--arch", "mlp", "--classes", "3", "--arch-kwargs", '{{"num_classes": 4}}'], ["--classes and --arch-kwargs", "disagree"]),
    ("cnn1d pooling the weights cannot tell", [*AUDIT, "--model", "{root}/pooled.pt", "--data", "{root}/seq.npz", "--arch", "cnn1d"], ["cannot tell max from mean", "--arch-kwargs"]),
    ("pt2 that is text", [*AUDIT, "--model", "{root}/text.pt2", "--data", "{data}"], ["'text.pt2' is not a torch.export program", "not a zip archive"]),
    ("pt2 that is a checkpoint", [*AUDIT, "--model", "{root}/weights.pt2", "--data", "{data}"], ["'weights.pt2' is not a torch.export program"]),
    ("pt2 with a fixed batch size", [*AUDIT, "--model", "{root}/fixed.pt2", "--data", "{data}"], ["fixed batch size 2", "dynamic_shapes"]),
    ("pt2 on data of another shape", [*AUDIT, "--model", "{root}/ok.pt2", "--data", "{root}/seq.npz"], ["cannot take"]),
    ("--arch for a pt2", [*AUDIT, "--model", "{root}/ok.pt2", "--data", "{data}", "--arch", "mlp"], ["torch.export program", "carries its own graph", "do not apply"]),
    ("--input-shape for TorchScript", [*AUDIT, "--model", "{root}/script.ts", "--data", "{data}", "--input-shape", "4"], ["TorchScript archive", "do not apply"]),
    ("HF directory with remote code", [*AUDIT, "--model", "{root}/remote", "--data", "{data}"], ["needs code shipped with the model", "modeling_x.Net", "--trust-code"]),
    ("HF directory without weights", [*AUDIT, "--model", "{root}/noweights", "--data", "{data}"], ["no model.safetensors", "pytorch_model.bin", "save_pretrained"]),
    ("HF directory with --arch", [*AUDIT, "--model", "{root}/noweights", "--data", "{data}", "--arch", "mlp"], ["HuggingFace model directory", "--arch"]),
    ("HF directory with --classes", [*AUDIT, "--model", "{root}/noweights", "--data", "{data}", "--classes", "3"], ["HuggingFace model directory", "--classes", "do not apply"]),
    # ---- bad option values
    ("audit lr inf", [*AUDIT, "--model", "{model}", "--data", "{data}", "--lr", "inf"], ["--lr", "not a finite number"]),
    ("audit lr nan", [*AUDIT, "--model", "{model}", "--data", "{data}", "--lr", "nan"], ["not a finite number"]),
    ("train lr inf", [*TRAIN, "--lr", "inf"], ["--lr", "not a finite number"]),
    ("train lr -inf", [*TRAIN, "--lr", "-inf"], ["not a finite number"]),
    ("train diverges at the last step", [*TRAIN, "--epochs", "1", "--lr", "1e308"], ["Training diverged", "not finite after the last step"]),
    ("train seed beyond 2**64", [*TRAIN, "--seed", "99999999999999999999"], ["'seed'", "at most 2**64 - 1"]),
    ("train lr negative", [*TRAIN, "--lr", "-0.1"], ["not > 0"]),
    ("train lr words", [*TRAIN, "--lr", "fast"], ["not a number"]),
    ("train epochs 0", [*TRAIN, "--epochs", "0"], ["--epochs"]),
    ("train batch size 0", [*TRAIN, "--batch-size", "0"], ["--batch-size"]),
    ("train unknown arch", [*TRAIN, "--arch", "vgg99"], ["--arch", "vgg99", "not one of"]),
    ("train unknown optimizer", [*TRAIN, "--optimizer", "rmsprop"], ["--optimizer"]),
    ("negative seed", [*AUDIT, "--model", "{model}", "--data", "{data}", "--seed", "-1"], ["--seed"]),
    ("unknown budget", [*AUDIT, "--model", "{model}", "--data", "{data}", "--budget", "huge"], ["--budget"]),
    ("unknown section", ["audit", "--model", "{model}", "--data", "{data}", "--sections", "nope"], ["unknown section"]),
    ("unknown option", [*AUDIT, "--model", "{model}", "--data", "{data}", "--frobnicate"], ["No such option"]),
    ("missing --data", [*AUDIT, "--model", "{model}"], ["Missing option", "--data"]),
    ("index beyond 10^12", [*EXPLAIN, "--index", "0..1000000000000"], ["--index 1000000000000 is out of range"]),
    ("index range past the end", [*EXPLAIN, "--index", "5..99"], ["--index 99 is out of range"]),
    ("index list past the end", [*EXPLAIN, "--index", "1,2,500"], ["--index 500 is out of range"]),
    ("empty index range", [*EXPLAIN, "--index", "5..2"], ["empty range"]),
    ("negative index", [*EXPLAIN, "--index", "-1"], [">= 0"]),
    ("index words", [*EXPLAIN, "--index", "first"], ["not an index"]),
    ("unknown method", [*EXPLAIN, "--method", "magic"], ["unknown method"]),
    ("negative target", [*EXPLAIN, "--target", "-1"], ["--target"]),
    ("seed differs from history", [*AUDIT, "--model", "{root}/trained/model.safetensors", "--data", "{data}", "--seed", "3"], ["--seed 3 differs from the seed 0"]),
    ("explain seed differs from history", ["explain", "--model", "{root}/trained/model.safetensors", "--data", "{data}", "--seed", "4", "--out", "{root}/e2"], ["--seed 4 differs from the seed 0", "test split would contain training examples"]),
    # ---- bad data
    ("unknown dataset", [*AUDIT, "--model", "{model}", "--data", "nosuch"], ["Unknown dataset 'nosuch'"]),
    ("data file missing", [*AUDIT, "--model", "{model}", "--data", "{root}/missing.npz"], ["does not exist"]),
    ("data is a FIFO", [*AUDIT, "--model", "{model}", "--data", "{root}/fifo.csv"], ["not a regular file", "FIFO"]),
    ("data is /dev/zero", [*AUDIT, "--model", "{model}", "--data", "{root}/zero.npz"], ["not a regular file"]),
    ("data .pt is /dev/zero", [*TRAIN, "--data", "{root}/zero.pt"], ["not a regular file"]),
    ("data with NaN", [*AUDIT, "--model", "{model}", "--data", "{root}/nan.npz"], ["NaN"]),
    ("empty data", [*AUDIT, "--model", "{model}", "--data", "{root}/empty.npz"], ["empty.npz"]),
    ("data without x", [*AUDIT, "--model", "{model}", "--data", "{root}/nox.npz"], ["must contain arrays 'x' and 'y'"]),
    ("csv header only", [*AUDIT, "--model", "{model}", "--data", "{root}/header.csv"], ["no data rows"]),
    ("csv with words", [*AUDIT, "--model", "{model}", "--data", "{root}/words.csv"], ["non-numeric value 'red'", "line 3"]),
    ("npz that is no zip", [*AUDIT, "--model", "{model}", "--data", "{root}/pickle.npz"], ["not a NumPy .npz"]),
    # ---- bad output paths
    ("out is a file", [*AUDIT, "--model", "{model}", "--data", "{data}", "--out", "{root}/afile"], ["is a file"]),
    ("out below a file", [*AUDIT, "--model", "{model}", "--data", "{data}", "--out", "{root}/afile/sub"], ["afile"]),
    ("out holds a user's report", [*AUDIT, "--model", "{model}", "--data", "{data}", "--out", "{root}/user"], ["not written by deepscope", "--overwrite"]),
    ("train out holds a user's model", ["train", "--data", "{data}", "--out", "{root}/user_train"], ["already exists", "--overwrite"]),
    ("explain out is a file", [*EXPLAIN[:-2], "--out", "{root}/afile"], ["is a file"]),
]  # fmt: skip


@pytest.mark.parametrize(("args", "fragments"), [case[1:] for case in CASES], ids=[case[0] for case in CASES])
def test_bad_input_is_one_error_line_with_exit_2(paths, args, fragments):
    runner = CliRunner()
    with runner.isolation() as (_, stderr, _):
        code = main([arg.format(**paths) for arg in args])
    text = stderr.getvalue().decode()
    errors = [line for line in text.splitlines() if line.startswith("error:")]
    assert code == 2, text
    assert len(errors) == 1 and "Traceback" not in text, text
    for fragment in fragments:
        assert fragment in errors[0], errors[0]


def test_suite_has_at_least_45_cases():
    assert len(CASES) >= 45 and len({case[0] for case in CASES}) == len(CASES)


def test_builtin_arch_for_bare_weights_works_end_to_end_with_input_shape_and_classes(paths, tmp_path):
    out = tmp_path / "report"
    args = [*AUDIT, "--model", paths["bare"], "--data", paths["data"], "--arch", "mlp", "--out", str(out)]
    assert main([*args, "--input-shape", "4", "--classes", "3"]) == 0
    assert json.loads((out / "results.json").read_text())["sections"]["model_card"]["status"] == "ok"
    assert main([*args, "--overwrite"]) == 0  # without them: the data's input shape and number of classes


@pytest.mark.slow  # two real `python -m deepscope` processes
def test_python_m_deepscope_never_runs_a_py_file_from_the_model_folder(paths, tmp_path):
    folder = Path(paths["root"]) / "shipped"
    folder.mkdir()
    marker = tmp_path / "code-ran"
    # named by the config, imported lazily, or imported eagerly by `import deepscope` (torch, numpy)
    for name in ("evil_module_in_folder", "sklearn", "safetensors", "torch", "numpy"):
        (folder / f"{name}.py").write_text(f"open({str(marker)!r}, 'a').write({name!r})\nclass Net: pass\n")
    for suffix in (".safetensors", ".json"):
        (folder / f"model{suffix}").write_bytes((Path(paths["root"]) / f"evil{suffix}").read_bytes())
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONSAFEPATH")}
    for extra in ([], ["--trust-code"]):  # even trusted, the current directory is not searched
        command = [sys.executable, "-m", "deepscope", "audit", "--model", "model.safetensors", "--data",
                   paths["data"], "--sections", "model_card", "--out", str(tmp_path / "out"), *extra]  # fmt: skip
        result = subprocess.run(command, cwd=folder, env=env, capture_output=True, text=True, timeout=600, check=False)
        errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
        assert result.returncode == 2 and len(errors) == 1, result.stderr
        assert ("--trust-code" if not extra else "importable module") in errors[0]
        assert not marker.exists(), marker.read_text()
