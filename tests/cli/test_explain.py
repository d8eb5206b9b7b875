"""``deepscope explain``: attributions and axiom checks for chosen examples, written as a unit."""

import json
from pathlib import Path

import pytest
import torch

from tests.cli.conftest import assert_one_line_error, run_cli


def _strict_json(path: Path) -> dict:
    def refuse(constant: str) -> None:
        raise ValueError(f"non-strict JSON constant {constant}")

    return json.loads(path.read_text(encoding="utf-8"), parse_constant=refuse)


def test_explain_writes_table_json_svgs_and_html(files, tmp_path):
    from deepscope.attribution import check_axioms, integrated_gradients
    from deepscope.datasets import load
    from deepscope.io import load_model
    from deepscope.report.html import GENERATOR_META

    out = tmp_path / "explain"
    code, stdout, stderr = run_cli(
        "explain",
        "--model",
        files["model"],
        "--data",
        files["data"],
        "--method",
        "ig",
        "--index",
        "0..1,4",
        "--out",
        out,
    )
    assert code == 0, stderr
    lines = stdout.splitlines()
    assert lines[0].startswith("integrated_gradients on 3 test example(s)")
    assert lines[1].split()[:5] == ["index", "label", "predicted", "target", "completeness_error"]
    assert [line.split()[0] for line in lines[2:5]] == ["0", "1", "4"]
    assert lines[5].startswith("axioms:  completeness ")
    assert f"report:  {(out / 'explain.html').absolute()}" in stdout

    # oracle: the same library calls on the same test rows (same seed, same split) give the same numbers
    dataset = load(str(files["data"]), seed=0)
    model = load_model(files["model"])
    inputs = dataset.x_test[[0, 1, 4]]
    expected = integrated_gradients(model, inputs, steps=None, tol=0.01)  # the CLI asks for adaptive steps
    record = _strict_json(out / "explain.json")
    assert (
        record["generator"] == "deepscope" and record["split"] == "test" and record["method"] == "integrated_gradients"
    )
    assert [row["index"] for row in record["examples"]] == [0, 1, 4]
    assert [row["label"] for row in record["examples"]] == dataset.y_test[[0, 1, 4]].tolist()
    assert [row["target"] for row in record["examples"]] == expected.target.tolist()
    # the same deterministic computation in the same process: equal up to float32 rounding
    torch.testing.assert_close(torch.tensor(record["attribution"]["values"]), expected.values, rtol=1e-6, atol=1e-7)
    # the checks run with the method's registered check options (fixed steps), not the adaptive ones: with
    # adaptive steps each model of the linearity check got its own quadrature and IG "violated" linearity
    axioms = check_axioms(model, inputs, expected.target, method="integrated_gradients", steps=256)
    assert [c["status"] for c in record["axioms"]["checks"]] == [c["status"] for c in axioms.checks]
    assert "violated" not in [c["status"] for c in axioms.checks if c["claimed"]]

    assert record["figures"] == ["example-0.svg", "example-1.svg", "example-4.svg"]
    for name in record["figures"]:
        text = (out / name).read_text(encoding="utf-8")
        assert text.startswith("<!-- generator: deepscope -->\n<svg")
    page = (out / "explain.html").read_text(encoding="utf-8")
    assert GENERATOR_META in page and page.count("<svg") == 3
    assert "http" not in page and "src=" not in page  # self-contained: no external URL at all

    # a second run may replace what deepscope wrote
    assert run_cli("explain", "--model", files["model"], "--data", files["data"], "--index", "0", "--out", out)[0] == 0


def test_explain_aliases_target_and_train_fallback(files, tmp_path, monkeypatch):
    import dataclasses

    import deepscope.cli.explain as cli_module

    out = tmp_path / "explain"
    code, stdout, stderr = run_cli(
        "explain", "--model", files["model"], "--data", files["data"], "--method", "Input-X-Gradient",
        "--index", "2", "--target", "1", "--out", out,
    )  # fmt: skip
    assert code == 0, stderr
    record = _strict_json(out / "explain.json")
    assert record["method"] == "input_x_gradient" and record["examples"][0]["target"] == 1

    load_dataset = cli_module._load_dataset

    def without_test_split(data, seed):
        dataset = load_dataset(data, seed)
        return dataclasses.replace(dataset, x_test=dataset.x_test[:0], y_test=dataset.y_test[:0])

    monkeypatch.setattr(cli_module, "_load_dataset", without_test_split)
    code, stdout, stderr = run_cli(
        "explain", "--model", files["model"], "--data", files["data"], "--method", "saliency", "--index", "29",
        "--out", out,
    )  # fmt: skip
    assert code == 0, stderr
    assert "no test split" in stderr and "1 train example(s)" in stdout
    record = _strict_json(out / "explain.json")
    assert record["split"] == "train" and record["examples"][0]["index"] == 29
    assert record["examples"][0]["completeness_error"] is None and "-" in stdout.splitlines()[2].split()


def test_explain_unknown_method_is_one_line(files, tmp_path):
    line = assert_one_line_error(
        run_cli("explain", "--model", files["model"], "--data", files["data"], "--method", "magic", "--out", tmp_path),
        "unknown method 'magic'",
    )
    assert "integrated_gradients" in line and "ig=integrated_gradients" in line


@pytest.mark.parametrize(
    ("index", "fragment"),
    [
        ("5..2", "A <= B"),
        ("a", "not an index"),
        ("-1", "must be >= 0"),
        ("1,,2", "not an index"),
        ("0,99", "out of range"),
    ],
)
def test_explain_bad_index_is_one_line(files, tmp_path, index, fragment):
    out = tmp_path / "explain"
    line = assert_one_line_error(
        run_cli("explain", "--model", files["model"], "--data", files["data"], "--index", index, "--out", out), fragment
    )
    if fragment == "out of range":
        assert "test split" in line and "0..9" in line  # 40 rows, 25% held out
    assert not out.exists()  # nothing written on a mistake


def test_explain_never_overwrites_user_files(files, tmp_path):
    out = tmp_path / "explain"
    out.mkdir()
    (out / "example-0.svg").write_text("<svg>my drawing</svg>")
    args = ("explain", "--model", files["model"], "--data", files["data"], "--index", "0", "--out", out)
    assert_one_line_error(run_cli(*args), "--overwrite")
    assert (out / "example-0.svg").read_text() == "<svg>my drawing</svg>"
    assert run_cli(*args, "--overwrite")[0] == 0
    assert (out / "example-0.svg").read_text().startswith("<!-- generator: deepscope -->")


def test_layer_methods_take_a_named_layer(files, tmp_path):
    from deepscope.attribution import layer_gradient_x_activation
    from deepscope.datasets import load
    from deepscope.io import load_model

    out = tmp_path / "layer"
    args = ["explain", "--model", files["model"], "--data", files["data"], "--method", "layer_gradient_x_activation",
            "--index", "0", "--out", out]  # fmt: skip
    code, stdout, stderr = run_cli(*args, "--layer", "0")
    assert code == 0, stderr
    record = _strict_json(out / "explain.json")
    model = load_model(files["model"])
    x, _ = load(str(files["data"]), seed=0).test
    expected = layer_gradient_x_activation(model, x[:1], record["examples"][0]["target"], layer=model[0]).values
    assert torch.allclose(torch.tensor(record["attribution"]["values"]), expected, atol=1e-6)  # that layer's values
    assert_one_line_error(run_cli(*args, "--layer", "nope", "--overwrite"), "--layer 'nope' is not a submodule")
    bad = run_cli("explain", "--model", files["model"], "--data", files["data"], "--method", "ig", "--layer", "0",
                  "--out", tmp_path / "ig")  # fmt: skip
    assert_one_line_error(bad, "--layer applies to the layer methods")


@pytest.mark.slow  # imports transformers' BERT
def test_token_models_are_explained_at_their_input_embedding(tmp_path):
    import numpy as np

    hf_models = pytest.importorskip("hf_models")
    pytest.importorskip("transformers")
    from deepscope._hf import load_hf
    from deepscope.attribution import layer_integrated_gradients

    hf_models.tiny_bert().save_pretrained(tmp_path / "bert")
    rng = np.random.default_rng(0)
    ids = rng.integers(1, hf_models.VOCAB, (20, 8))
    ids[::2, 6:] = hf_models.PAD_ID
    np.savez(tmp_path / "tokens.npz", input_ids=ids, attention_mask=ids != 0, labels=np.arange(20) % 3)
    out = tmp_path / "explain"
    code, stdout, stderr = run_cli("explain", "--model", tmp_path / "bert", "--data", tmp_path / "tokens.npz",
                                   "--method", "layer_integrated_gradients", "--index", "0..1", "--out", out)  # fmt: skip
    assert code == 0, stderr
    assert "axioms:  not checked (token ids" in stdout and "tok " in stdout
    record = _strict_json(out / "explain.json")
    assert record["axioms"] is None
    # oracle: the library call at the word embeddings (the default for a HuggingFace model) on the same ids
    model = load_hf(tmp_path / "bert")
    from deepscope.datasets import load

    x, _ = load(str(tmp_path / "tokens.npz"), seed=0).test
    targets = [row["target"] for row in record["examples"]]
    expected = layer_integrated_gradients(model, x[:2], targets, layer=model.model.get_input_embeddings(),
                                          steps=None, tol=0.01).values  # fmt: skip
    assert torch.allclose(torch.tensor(record["attribution"]["values"]), expected, atol=1e-6)
