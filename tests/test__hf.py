"""deepscope._hf: HuggingFace directories built offline from config.json + model.safetensors.

Oracle: the model that wrote the directory (save_pretrained), called the HuggingFace way with
the tokenizer-style attention mask; the loaded, wrapped model must give the same logits exactly
(same weights, same kernels, same order of operations).
"""

import json
import shutil
import sys

import hf_models
import numpy as np
import pytest
import torch

from deepscope._hf import Logits, check_token_data, is_hf_directory, load_hf
from deepscope.data.files import load_file
from deepscope.errors import DataError, UnsafeFileError

transformers = pytest.importorskip("transformers")


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    root = tmp_path_factory.mktemp("hf")
    models = {
        "bert": hf_models.tiny_bert(),
        "gpt2_lm": hf_models.tiny_gpt2_lm(),
        "vit": hf_models.tiny_vit(),
    }
    for name, model in models.items():
        model.save_pretrained(root / name)
    return root, models


def token_ids(rows=4, length=8):
    ids = torch.randint(1, hf_models.VOCAB, (rows, length), generator=torch.Generator().manual_seed(0))
    ids[0, 5:] = hf_models.PAD_ID  # right padding, as a tokenizer writes it
    return ids


def test_bert_loads_offline_and_gives_the_saved_models_logits(saved, monkeypatch):
    root, models = saved
    monkeypatch.setenv("HF_HUB_OFFLINE", "0")  # the loader sets it itself, and restores it
    model = load_hf(root / "bert")
    assert isinstance(model, Logits) and type(model.model).__name__ == "BertForSequenceClassification"
    assert not model.training and model.pad_token_id == hf_models.PAD_ID
    ids = token_ids()
    expected = models["bert"](input_ids=ids, attention_mask=(ids != hf_models.PAD_ID).long()).logits
    assert torch.equal(model(ids), expected)
    assert torch.equal(model(input_ids=ids), expected)  # named inputs pass through
    assert torch.equal(model(input_ids=ids, attention_mask=torch.ones_like(ids)), models["bert"](input_ids=ids).logits)
    import os

    assert os.environ["HF_HUB_OFFLINE"] == "0"


def test_a_language_model_gives_the_next_token_scores_after_the_last_real_token(saved):
    root, models = saved
    model = load_hf(root / "gpt2_lm")
    assert model.model.lm_head.weight is model.model.transformer.wte.weight  # still tied after loading
    ids = token_ids()
    mask = (ids != hf_models.PAD_ID).long()
    full = models["gpt2_lm"](input_ids=ids, attention_mask=mask).logits
    last = mask.sum(1) - 1  # right padding: the last attended position
    assert torch.equal(model(ids), full[torch.arange(len(ids)), last])
    assert model(ids).shape == (4, hf_models.VOCAB)


def test_an_image_model_takes_pixel_values(saved):
    root, models = saved
    model = load_hf(root / "vit")
    config = models["vit"].config
    pixels = torch.randn(2, config.num_channels, config.image_size, config.image_size)
    assert torch.equal(model(pixels), models["vit"](pixel_values=pixels).logits)


def test_remote_code_is_refused_unless_trusted(saved, tmp_path):
    root, _ = saved
    target = tmp_path / "remote"
    shutil.copytree(root / "bert", target)
    config = json.loads((target / "config.json").read_text())
    config["auto_map"] = {"AutoModelForSequenceClassification": "modeling_evil.EvilModel"}
    (target / "config.json").write_text(json.dumps(config))
    marker = tmp_path / "remote-code-ran"
    (target / "modeling_evil.py").write_text(f"open({str(marker)!r}, 'w').write('ran')\n")
    with pytest.raises(
        UnsafeFileError, match=r"needs code shipped with the model.*modeling_evil.EvilModel.*trust_code"
    ):
        load_hf(target)
    assert not marker.exists()


def test_remote_code_runs_when_trusted(saved, tmp_path, monkeypatch):
    from transformers import dynamic_module_utils

    root, models = saved
    cache = tmp_path / "modules"  # where transformers copies the model's code before importing it
    monkeypatch.setattr(dynamic_module_utils, "HF_MODULES_CACHE", str(cache))
    monkeypatch.setattr(sys, "path", list(sys.path))  # transformers appends the cache to sys.path
    target = tmp_path / "remote"
    shutil.copytree(root / "bert", target)
    config = json.loads((target / "config.json").read_text())
    config["auto_map"] = {"AutoModelForSequenceClassification": "modeling_h6.H6Model"}
    (target / "config.json").write_text(json.dumps(config))
    (target / "modeling_h6.py").write_text(
        "from transformers import BertForSequenceClassification\n\n\n"
        "class H6Model(BertForSequenceClassification):\n    pass\n"
    )
    model = load_hf(target, trust_code=True)
    assert type(model.model).__name__ == "H6Model"  # the shipped class, filled with the saved weights
    ids = token_ids()
    assert torch.equal(model(ids), load_hf(root / "bert")(ids))


def test_directories_without_what_is_needed(saved, tmp_path, monkeypatch):
    root, _ = saved
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(DataError, match="without a config.json"):
        load_hf(empty)
    assert not is_hf_directory(empty) and is_hf_directory(root / "bert")
    no_weights = tmp_path / "no_weights"
    no_weights.mkdir()
    shutil.copy(root / "bert" / "config.json", no_weights)
    (no_weights / "pytorch_model.bin").write_bytes(b"\x80\x02pickle")
    with pytest.raises(DataError, match=r"no model.safetensors \(it holds pytorch_model.bin.*a pickle\)"):
        load_hf(no_weights)
    unknown = tmp_path / "unknown"
    shutil.copytree(root / "bert", unknown)
    config = json.loads((unknown / "config.json").read_text())
    (unknown / "config.json").write_text(json.dumps({**config, "architectures": ["os.system", "NoSuchModel"]}))
    with pytest.raises(DataError, match="names no architecture that transformers"):
        load_hf(unknown)
    huge = tmp_path / "huge"
    shutil.copytree(root / "bert", huge)
    (huge / "config.json").write_text(json.dumps({**config, "vocab_size": 10**6}))  # 128 MB of embeddings
    with pytest.raises(DataError, match=r"declares .* MB of weights.*nothing was allocated"):
        load_hf(huge)
    monkeypatch.setitem(sys.modules, "transformers", None)  # as if the extra were not installed
    with pytest.raises(DataError, match=r"needs transformers: pip install deepscope\[hf\]"):
        load_hf(root / "bert")


def test_weights_that_do_not_fill_the_model_are_named(saved, tmp_path):
    from safetensors.torch import load_file as read
    from safetensors.torch import save_file

    root, _ = saved
    target = tmp_path / "partial"
    shutil.copytree(root / "bert", target)
    state = read(target / "model.safetensors")
    state.pop("classifier.weight")
    save_file(state, target / "model.safetensors", metadata={"format": "pt"})
    with pytest.raises(DataError, match=r"do not fill BertForSequenceClassification.*missing keys 'classifier.weight'"):
        load_hf(target)


def test_token_data_is_checked_against_the_model(saved, tmp_path):
    root, _ = saved
    model = load_hf(root / "bert")
    rng = np.random.default_rng(0)
    ids = rng.integers(1, hf_models.VOCAB, (20, 8))
    ids[::2, 6:] = 0
    np.savez(tmp_path / "ok.npz", input_ids=ids, attention_mask=(ids != 0), labels=np.arange(20) % 3)
    check_token_data(model, load_file(tmp_path / "ok.npz"))  # fits: no error
    big = ids.copy()
    big[3, 2] = hf_models.VOCAB + 5
    np.savez(tmp_path / "big.npz", input_ids=big, labels=np.arange(20) % 3)
    with pytest.raises(
        DataError, match=rf"Token id {hf_models.VOCAB + 5} in big is out of range.*{hf_models.VOCAB} ids"
    ):
        check_token_data(model, load_file(tmp_path / "big.npz"))
    other_pad = np.where(ids == 0, 7, ids)
    np.savez(tmp_path / "pad.npz", input_ids=other_pad, attention_mask=(other_pad != 7), labels=np.arange(20) % 3)
    with pytest.raises(DataError, match="pad with id 7, but the model's config.json has pad_token_id 0"):
        check_token_data(model, load_file(tmp_path / "pad.npz"))
    long = rng.integers(1, hf_models.VOCAB, (20, hf_models.MAX_POSITIONS + 1))
    np.savez(tmp_path / "long.npz", input_ids=long, labels=np.arange(20) % 3)
    with pytest.raises(DataError, match=f"have {hf_models.MAX_POSITIONS + 1} tokens; the model takes at most"):
        check_token_data(model, load_file(tmp_path / "long.npz"))


def test_load_model_takes_a_huggingface_directory(saved):
    from deepscope.io import load_model

    root, models = saved
    model = load_model(root / "bert")
    ids = token_ids()
    assert isinstance(model, Logits) and torch.equal(model(ids), load_hf(root / "bert")(ids))
    with pytest.raises(DataError, match="is a directory"):  # with an arch, a directory is not a model file
        load_model(root / "bert", arch="mlp")


def test_a_base_model_without_a_head_is_refused(tmp_path):
    config = transformers.BertConfig(vocab_size=50, hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
                                     intermediate_size=32, max_position_embeddings=16)  # fmt: skip
    transformers.BertModel(config).save_pretrained(tmp_path / "base")
    with pytest.raises(DataError, match="BertModel in .* is a base model without a task head"):
        load_hf(tmp_path / "base")
