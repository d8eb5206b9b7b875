import json

import torch

from deepscope.models import build
from deepscope.models.report_section import model_card_section
from deepscope.problem import Problem
from deepscope.report.sections import SECTIONS, AuditContext, Figure, Table
from deepscope.results import to_jsonable
from deepscope.testing import check_model_untouched, make_fixture


def small_problem():
    fixture = make_fixture("cnn")
    return fixture, fixture.problem()


def strict_json(results):
    return json.loads(json.dumps(to_jsonable(results), allow_nan=False))


def test_the_model_card_section_is_registered_by_the_models_family():
    assert SECTIONS["model_card"].order == 10 and SECTIONS["model_card"].builder is model_card_section


def test_model_card_on_a_small_problem():
    fixture, problem = small_problem()
    section = check_model_untouched(model_card_section, fixture.model, AuditContext(problem=problem, model_name="cnn"))
    total = sum(p.numel() for p in fixture.model.parameters())
    assert section.summary.startswith(f"cnn has {total:,} parameters")
    kinds = [type(block) for block in section.blocks]
    assert Table in kinds and Figure in kinds
    assert section.blocks[-1].svg.startswith("<svg")
    architecture = [b for b in section.blocks if isinstance(b, Table) and b.caption.startswith("Architecture")][0]
    assert architecture.rows[0]["output shape"] == "4 × 8 × 8"
    assert strict_json(section.results)["model_summary"]["total_parameters"] == total


def test_model_card_on_a_digits_cnn():
    torch.manual_seed(0)
    model = build("cnn2d", (1, 8, 8), 10)
    x, y = torch.rand(12, 1, 8, 8), torch.arange(12) % 10
    section = model_card_section(AuditContext(problem=Problem(model, (x, y)), model_name="cnn2d"))
    assert "uses ReLU" in section.summary


def test_model_card_of_a_model_taking_a_dict_of_tensors():
    # oracle: the parameter count by hand; the card says in one line why no shapes are traced
    class Keyword(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.embed = torch.nn.Embedding(10, 4)
            self.head = torch.nn.Linear(4, 3)

        def forward(self, input_ids, attention_mask):
            return self.head((self.embed(input_ids) * attention_mask[..., None]).mean(1))

    ids = torch.randint(0, 10, (12, 5))
    batch = {"input_ids": ids, "attention_mask": torch.ones(12, 5)}
    problem = Problem(Keyword(), (batch, torch.randint(0, 3, (12,))))
    section = model_card_section(AuditContext(problem=problem))
    assert section.results["model_summary"].total_parameters == 10 * 4 + 4 * 3 + 3
    texts = [block.text for block in section.blocks if hasattr(block, "text")]
    assert any(
        t.startswith(
            "Output shapes per layer are not traced: this model takes a dict of tensors (input_ids, attention_mask)"
        )
        for t in texts
    )
