"""The token models' Attribution section: what it runs, what it shows, what it records."""

from __future__ import annotations

import pytest
import torch

from deepscope import Problem
from deepscope.attribution import _report_tokens, layer_integrated_gradients
from deepscope.attribution._report_tokens import token_section
from deepscope.errors import UnsupportedModelError
from deepscope.report.sections import AuditContext, Html, Table

hf_models = pytest.importorskip("hf_models")


def _logits(out):
    return out.logits


def _section(model, inputs, labels, **context):
    problem = Problem(model, (inputs, labels), output_fn=_logits)
    return token_section(AuditContext(problem=problem, **context), inputs, {"max_steps": 256})


def test_the_layer_methods_run_from_the_pad_token_and_their_scores_are_recorded():
    model = hf_models.tiny_bert(dtype=torch.float64)
    model.config.pad_token_id = 0
    inputs, labels = hf_models.token_batch(3, seq_len=6, seed=1)
    section = _section(model, inputs, labels)
    assert {"layer_integrated_gradients", "attn_lrp"} <= set(section.results["methods"])
    # the recorded scores are layer IG's own, from the pad-token baseline (the report's 32 fixed steps)
    direct = layer_integrated_gradients(model, inputs, None, output_fn=_logits, baseline=0, steps=32)
    recorded = torch.tensor(section.results["token_scores"]["layer_integrated_gradients"], dtype=torch.float64)
    torch.testing.assert_close(recorded, direct.values[:3], rtol=1e-10, atol=1e-12)  # same calls, float64
    checks = {(row["method"], row["check"]) for row in section.results["errors"]}
    assert ("layer_integrated_gradients", "completeness error") in checks
    assert ("attn_lrp", "share untracked") in checks
    assert any(isinstance(block, Table) for block in section.blocks)
    text = " ".join(getattr(block, "text", "") for block in section.blocks)
    assert "shown as their ids" in text  # no tokenizer anywhere
    assert "3 inputs" in section.summary


def test_a_method_that_refuses_the_model_is_listed_and_the_others_still_shown(monkeypatch):
    def refuses(model, inputs, target, **options):
        raise UnsupportedModelError("cannot follow this model")

    real = _report_tokens.report_methods

    def with_a_refusal(inputs, budget, max_steps):
        return {**real(inputs, budget, max_steps), "refuses": (refuses, {})}

    monkeypatch.setattr(_report_tokens, "report_methods", with_a_refusal)
    inputs, labels = hf_models.token_batch(2, seq_len=5, seed=2)
    section = _section(hf_models.tiny_bert(), inputs, labels)
    assert section.results["skipped"] == ["refuses: cannot follow this model"]
    assert "refuses" not in section.results["methods"] and section.results["methods"]
    assert any(isinstance(block, Html) for block in section.blocks)  # the coloured text of the others
