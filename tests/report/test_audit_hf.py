"""The audit of HuggingFace models (tiny BERT, GPT-2, ViT from configs, default sdpa attention).

Every section runs with no section in error and no block in error: a block either ran, shrank
to its budget, declined on cost, or said in one line why it does not apply (issue 12, item 7).
Which of the last three happens depends on the machine's speed, so the tests check that each
block took one of those four ways, never which one.
"""

from __future__ import annotations

import json

import hf_models
import pytest

from deepscope.report import audit
from deepscope.testing import fingerprint_differences, model_fingerprint

pytestmark = pytest.mark.slow


def _logits(output):
    return output.logits


def _data(kind: str):
    if kind == "vit":
        return hf_models.image_batch(12, seed=0), hf_models.image_batch(8, seed=1)
    return (
        hf_models.token_batch(12, seq_len=8, vocab=hf_models.VOCAB, seed=0),
        hf_models.token_batch(8, seq_len=8, vocab=hf_models.VOCAB, seed=1),
    )


_BUILDERS = {"bert": hf_models.tiny_bert, "gpt2": hf_models.tiny_gpt2, "vit": hf_models.tiny_vit}


@pytest.mark.parametrize("kind", ["bert", "gpt2", "vit"])
def test_audit_of_a_tiny_hf_model_has_no_section_or_block_in_error(kind, tmp_path):
    model = _BUILDERS[kind]()
    assert model.config._attn_implementation == "sdpa"  # the default fused attention, not eager
    before = model_fingerprint(model)
    paths = audit(model, _data(kind), out=tmp_path, output_fn=_logits)
    assert fingerprint_differences(before, model_fingerprint(model)) == []
    sections = json.loads(paths.json.read_text())["sections"]
    assert set(sections) >= {"model_card", "training", "generalization", "attribution", "expressivity", "curvature"}
    for key, section in sections.items():
        assert section["status"] == "ok", (key, section.get("error"))
        assert not section["results"].get("block_errors"), (key, section["results"].get("block_errors"))
        for cost in section.get("costs", []):
            # each block ran (seconds), or declined on cost, or does not apply — with its reason
            assert "error" not in cost, (key, cost)
            assert cost.get("seconds", 0.0) >= 0.0
    expressivity = sections["expressivity"]
    if kind != "vit":  # token inputs: every input-space block says why in one line
        assert expressivity["summary"] == "No expressivity analysis applied to this model (each block below says why)."
        assert all(cost.get("not_applicable") for cost in expressivity["costs"])
        page = paths.html.read_text()
        assert "this model&#x27;s inputs are a dict of tensors (input_ids, attention_mask)" in page
    assert "tanh network" not in expressivity["summary"]
