import json

import pytest

from deepscope.attribution.report_section import build_attribution_section
from deepscope.report.sections import SECTIONS, AuditContext, Figure, Table
from deepscope.results import to_jsonable
from deepscope.testing import make_fixture


def test_section_on_the_cnn_fixture_has_maps_axioms_and_a_summary():
    fixture = make_fixture("cnn")
    section = build_attribution_section(AuditContext(problem=fixture.problem()))
    assert SECTIONS["attribution"].order == 40
    assert any(isinstance(block, Figure) and block.svg.startswith("<svg") for block in section.blocks)
    axioms = section.results["axioms"]
    assert {row["method"] for row in axioms} == {"integrated_gradients", "deeplift"}
    # with fixed steps integrated gradients is linear up to float32 rounding
    assert all(
        row["status"] == "held"
        for row in axioms
        if row["method"] == "integrated_gradients" and row["axiom"] == "linearity"
    )
    assert any(isinstance(block, Table) for block in section.blocks)
    assert section.summary.endswith(".") and "inputs" in section.summary
    assert "lrp" in section.results["methods"]  # the CNN fixture (BatchNorm, pooling) is LRP-able
    try:
        from deepscope.attribution.metrics import summary_metrics  # noqa: F401  (the metrics helper's module)
    except ImportError:
        return
    assert section.results["metrics"]["saliency"]["deletion_auc"]["standard_error"] >= 0
    json.dumps(to_jsonable(section.results), allow_nan=False)


def test_sequences_get_in_silico_mutagenesis():
    fixture = make_fixture("sequence")
    section = build_attribution_section(AuditContext(problem=fixture.problem()))
    assert "ism" in section.results["methods"]


def test_token_models_get_layer_methods_and_coloured_text():
    import hf_models

    from deepscope import Problem
    from deepscope.report.sections import Html

    model = hf_models.tiny_bert()
    inputs, labels = hf_models.token_batch(6, seq_len=6, seed=0)
    problem = Problem(model, (inputs, labels), output_fn=lambda out: out.logits)
    section = build_attribution_section(AuditContext(problem=problem))
    assert section.results["skipped"] == []
    assert set(section.results["methods"]) == {"layer_integrated_gradients", "attn_lrp"}
    html = next(block.html for block in section.blocks if isinstance(block, Html))
    assert html.count("layer_integrated_gradients") == 4 and "rgba(" in html
    # padded positions are left out: row 1 of token_batch has padding
    assert len(section.results["token_scores"]["attn_lrp"][1]) == 6
    errors = {(row["method"], row["check"]): row["worst"] for row in section.results["errors"]}
    assert errors["layer_integrated_gradients", "completeness error"] < 0.05  # 32 Gauss-Legendre nodes, smooth model
    # AttnLRP at the word embeddings: the position embeddings keep their share, nothing is lost (float32)
    assert errors["attn_lrp", "share kept by constant"] > 0.01
    assert errors["attn_lrp", "share untracked"] < 1e-4
    json.dumps(to_jsonable(section.results), allow_nan=False)


@pytest.mark.slow
def test_a_vision_transformer_with_output_fn_gets_maps_and_axioms():
    import hf_models

    from deepscope import Problem

    pixels, labels = hf_models.image_batch(8)
    problem = Problem(hf_models.tiny_vit(), (pixels, labels), output_fn=lambda out: out.logits)
    section = build_attribution_section(AuditContext(problem=problem))
    assert {"saliency", "integrated_gradients"} <= set(section.results["methods"])
    assert section.results["axioms"]  # check_axioms got the output_fn too


def test_token_sections_take_dict_test_inputs_and_a_tokenizer_from_the_dataset():
    import types

    import hf_models

    from deepscope import Problem
    from deepscope.report.sections import Html

    class Tokenizer:
        def convert_ids_to_tokens(self, ids):
            return [f"tok{i}" for i in ids]

    model = hf_models.tiny_gpt2()
    inputs, labels = hf_models.token_batch(4, seq_len=5, seed=3)
    dataset = types.SimpleNamespace(x_test=inputs, tokenizer=Tokenizer())
    problem = Problem(model, (inputs, labels), output_fn=lambda out: out.logits)
    section = build_attribution_section(AuditContext(problem=problem, dataset=dataset))
    html = next(block.html for block in section.blocks if isinstance(block, Html))
    assert f">tok{int(inputs['input_ids'][0, 0])}<" in html
    assert "shown as their ids" not in " ".join(b.text for b in section.blocks if hasattr(b, "text"))


def _priced(problem, unit_seconds: float) -> AuditContext:
    """A context whose measured pass cost is patched (as tests/report/test_cost.py does): 20 s per block."""
    from deepscope.report.cost import PassCost

    context = AuditContext(problem=problem, budget="quick")
    context.cache["report.pass_cost"] = PassCost(unit_seconds, unit_seconds / 3, 10, 8)
    return context


def test_blocks_that_do_not_fit_the_budget_decline_in_one_line():
    fixture = make_fixture("cnn")
    section = build_attribution_section(_priced(fixture.problem(), 100.0))  # 100 s per pass: nothing fits
    assert section.results["methods"] == [] and section.results["axioms"] == []
    assert all("declined (about" in line for line in section.results["skipped"])
    texts = [block.text for block in section.blocks if hasattr(block, "text")]
    declined = [text for text in texts if " declined: it would take about " in text]
    labels = {text.split(" declined")[0] for text in declined}
    assert labels == {"Axioms of integrated_gradients", "Axioms of deeplift", "Randomisation sanity check"}
    assert all("\n" not in text for text in declined)
    assert all(cost.get("declined") for cost in section.costs)


def test_axiom_checks_shrink_to_the_budget_and_say_so():
    fixture = make_fixture("cnn")
    # 0.005 s per pass: 4000 passes per block; 10 calls x (256 steps + 2) per input -> 1 input, 256 steps
    # for integrated gradients (its map's step cap: 10 s / 0.005 s over 4 inputs = 500 >= 256)
    section = build_attribution_section(_priced(fixture.problem(), 0.005))
    assert "integrated_gradients" in section.results["methods"]
    assert section.results["axioms_fitted"] == ["integrated_gradients on 1 of 3 inputs with 256 steps"]
    texts = " ".join(block.text for block in section.blocks if hasattr(block, "text"))
    assert "Fitted to the time budget: integrated_gradients on 1 of 3 inputs with 256 steps." in texts
    assert {row["method"] for row in section.results["axioms"]} == {"integrated_gradients", "deeplift"}
    timed = [cost for cost in section.costs if "seconds" in cost]
    assert {"Faithfulness metrics", "Randomisation sanity check"} <= {cost["block"] for cost in timed}
    assert all(cost["estimated_seconds"] <= cost["budget_seconds"] for cost in timed)
