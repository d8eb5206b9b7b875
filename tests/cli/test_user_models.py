"""The user's own architecture from the command line (issue 12, item 5): each documented path runs.

A torch.export program and a TorchScript archive (they carry their graph), a trusted factory module
in the current directory with --arch-kwargs, --arch cnn1d on bare weights trained with other
options, and a HuggingFace directory with token data. Each test checks the report's sections and
that the model file on disk is what was saved (deepscope only reads it).
"""

from __future__ import annotations

import json
import sys

import numpy as np
import pytest
import torch

from deepscope.models import build
from tests.cli.conftest import run_cli


def sections(out):
    return {key: entry["status"] for key, entry in json.loads((out / "results.json").read_text())["sections"].items()}


def digits_cnn():
    from deepscope.datasets import load

    torch.manual_seed(0)
    data = load("digits", seed=0)
    return build("cnn2d", data.input_shape, data.num_classes).eval(), data


def test_an_exported_program_is_audited(tmp_path):
    model, data = digits_cnn()
    program = torch.export.export(model, (data.x_train[:2],), dynamic_shapes=({0: torch.export.Dim("batch")},))
    torch.export.save(program, tmp_path / "cnn.pt2")
    before = (tmp_path / "cnn.pt2").read_bytes()
    code, stdout, stderr = run_cli("audit", "--model", tmp_path / "cnn.pt2", "--data", "digits", "--sections",
                                   "model_card", "--out", tmp_path / "out")  # fmt: skip
    assert code == 0, stderr
    assert sections(tmp_path / "out") == {"model_card": "ok"}
    assert (tmp_path / "cnn.pt2").read_bytes() == before


def test_a_torchscript_model_no_longer_crashes_in_the_guard(tmp_path):
    # every analysis used to end in "internal error" (KeyError: 0 in the guard's restore)
    model, _ = digits_cnn()
    torch.jit.save(torch.jit.script(model), tmp_path / "cnn.ts")
    code, stdout, stderr = run_cli("explain", "--model", tmp_path / "cnn.ts", "--data", "digits", "--method", "ixg",
                                   "--index", "0..1", "--out", tmp_path / "explain")  # fmt: skip
    assert code == 0 and "input_x_gradient on 2 test example(s)" in stdout, stderr


@pytest.mark.slow  # a whole report section on a scripted CNN
def test_a_torchscript_model_is_audited(tmp_path):
    model, _ = digits_cnn()
    torch.jit.save(torch.jit.script(model), tmp_path / "cnn.ts")
    code, _, stderr = run_cli("audit", "--model", tmp_path / "cnn.ts", "--data", "digits", "--sections",
                              "attribution", "--out", tmp_path / "out")  # fmt: skip
    assert code == 0 and "internal error" not in stderr, stderr
    assert sections(tmp_path / "out")["attribution"] == "ok"


FACTORY = """import torch


class Net(torch.nn.Module):
    def __init__(self, hidden=8, classes=3):
        super().__init__()
        self.body = torch.nn.Sequential(torch.nn.Linear(4, hidden), torch.nn.Tanh())
        self.head = torch.nn.Linear(hidden, classes)

    def forward(self, x):
        return self.head(self.body(x))
"""


def test_a_factory_in_the_current_directory_with_trust_code_and_arch_kwargs(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "path", [p for p in sys.path if p not in ("", ".", str(tmp_path))])
    monkeypatch.delitem(sys.modules, "h6_cli_net", raising=False)
    (tmp_path / "h6_cli_net.py").write_text(FACTORY)
    sys.path.insert(0, str(tmp_path))  # build the weights from the same class, then forget the module
    from h6_cli_net import Net

    sys.path.remove(str(tmp_path))
    del sys.modules["h6_cli_net"]
    torch.manual_seed(0)
    net = Net(hidden=16)
    torch.save(net.state_dict(), tmp_path / "weights.pt")
    rng = np.random.default_rng(0)
    np.savez(tmp_path / "data.npz", x=rng.normal(size=(60, 4)).astype(np.float32), y=np.arange(60) % 3)
    args = ["audit", "--model", "weights.pt", "--data", "data.npz", "--sections", "model_card", "--arch",
            "h6_cli_net:Net", "--arch-kwargs", '{"hidden": 16}']  # fmt: skip
    code, _, stderr = run_cli(*args, "--out", "refused")
    assert code == 2 and "did not import" in stderr and "--trust-code" in stderr
    assert "h6_cli_net" not in sys.modules
    code, _, stderr = run_cli(*args, "--trust-code", "--out", "report")
    assert code == 0, stderr
    assert sections(tmp_path / "report") == {"model_card": "ok"}
    code, _, stderr = run_cli(*args[:-1], '{"hidden": 5}', "--trust-code", "--out", "other")  # kwargs reach the class
    assert code == 2 and "'body.0.weight'" in stderr and "(16, 4)" in stderr and "(5, 4)" in stderr, stderr


def test_arch_cnn1d_on_bare_weights_trained_with_other_options(tmp_path):
    torch.manual_seed(0)
    model = build("cnn1d", (1, 40), 10, channels=[8, 12], kernel_size=3, hidden=0).eval()  # mnist1d's shape
    torch.save(model.state_dict(), tmp_path / "weights.pt")
    out = tmp_path / "out"
    code, _, stderr = run_cli("audit", "--model", tmp_path / "weights.pt", "--arch", "cnn1d", "--data", "mnist1d",
                              "--sections", "model_card", "--out", out)  # fmt: skip
    assert code == 0, stderr
    assert sections(out) == {"model_card": "ok"}
    card = json.loads((out / "results.json").read_text())["sections"]["model_card"]
    assert str(sum(p.numel() for p in model.parameters())) in json.dumps(card)  # the file's network, all of it


@pytest.mark.slow  # imports transformers' BERT
def test_a_huggingface_directory_with_token_data(tmp_path):
    hf_models = pytest.importorskip("hf_models")
    pytest.importorskip("transformers")
    hf_models.tiny_bert().save_pretrained(tmp_path / "bert")
    rng = np.random.default_rng(0)
    ids = rng.integers(1, hf_models.VOCAB, (40, 8))
    ids[::4, 6:] = hf_models.PAD_ID
    np.savez(tmp_path / "tokens.npz", input_ids=ids, attention_mask=ids != hf_models.PAD_ID, labels=np.arange(40) % 3)
    code, _, stderr = run_cli("audit", "--model", tmp_path / "bert", "--data", tmp_path / "tokens.npz",
                              "--sections", "model_card", "--out", tmp_path / "out")  # fmt: skip
    assert code == 0, stderr
    assert sections(tmp_path / "out") == {"model_card": "ok"}
    ids[5, 3] = hf_models.VOCAB  # one id past the vocabulary: a one-line error before any analysis
    np.savez(tmp_path / "bad.npz", input_ids=ids, attention_mask=ids != hf_models.PAD_ID, labels=np.arange(40) % 3)
    code, _, stderr = run_cli("audit", "--model", tmp_path / "bert", "--data", tmp_path / "bad.npz", "--out",
                              tmp_path / "bad")  # fmt: skip
    errors = [line for line in stderr.splitlines() if line.startswith("error:")]
    assert code == 2 and len(errors) == 1 and f"Token id {hf_models.VOCAB} in bad is out of range" in errors[0], stderr


@pytest.mark.slow  # a real `python -m deepscope` process: the command line takes the current directory off sys.path
def test_python_m_deepscope_finds_a_named_module_in_the_current_directory_only_with_trust_code(tmp_path):
    import os
    import subprocess

    (tmp_path / "h6_proc_net.py").write_text(FACTORY)
    marker = tmp_path / "shadow-ran"
    (tmp_path / "numpy.py").write_text(f"open({str(marker)!r}, 'w').write('numpy')\n")  # never imported
    script = "import torch, h6_proc_net; torch.save(h6_proc_net.Net(hidden=16).state_dict(), 'weights.pt')"
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONSAFEPATH")}
    subprocess.run([sys.executable, "-I", "-c", f"import sys; sys.path.append('.'); {script}"], cwd=tmp_path,
                   env=env, check=True, timeout=300)  # fmt: skip
    rng = np.random.default_rng(0)
    np.savez(tmp_path / "data.npz", x=rng.normal(size=(60, 4)).astype(np.float32), y=np.arange(60) % 3)
    command = [sys.executable, "-m", "deepscope", "audit", "--model", "weights.pt", "--data", "data.npz",
               "--sections", "model_card", "--arch", "h6_proc_net:Net", "--arch-kwargs", '{"hidden": 16}']  # fmt: skip
    refused = subprocess.run([*command, "--out", "a"], cwd=tmp_path, env=env, capture_output=True, text=True,
                             timeout=600, check=False)  # fmt: skip
    assert refused.returncode == 2 and "--trust-code" in refused.stderr, refused.stderr
    trusted = subprocess.run([*command, "--trust-code", "--out", "b"], cwd=tmp_path, env=env, capture_output=True,
                             text=True, timeout=600, check=False)  # fmt: skip
    assert trusted.returncode == 0, trusted.stderr
    assert sections(tmp_path / "b") == {"model_card": "ok"}
    assert not marker.exists()
