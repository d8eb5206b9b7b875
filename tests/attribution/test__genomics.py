import json

import pytest
import torch

from deepscope.attribution._genomics import chance_precision, sites
from deepscope.attribution.report_section import _genomics_parts
from deepscope.report.sections import AuditContext, Figure, Text
from deepscope.testing import make_fixture


def test_public_api_exports_the_genomics_functions():
    import deepscope.attribution as attribution
    import deepscope.datasets as datasets
    from deepscope.attribution.deep_lift_shap import deep_lift_shap
    from deepscope.attribution.logos import attribution_logo
    from deepscope.attribution.seqlets import call_seqlets, motif_recovery
    from deepscope.data.shuffle import dinucleotide_shuffle

    expected = {
        "deep_lift_shap": deep_lift_shap,
        "attribution_logo": attribution_logo,
        "call_seqlets": call_seqlets,
        "motif_recovery": motif_recovery,
    }
    for name, function in expected.items():
        assert name in attribution.__all__ and getattr(attribution, name) is function
    assert "dinucleotide_shuffle" in datasets.__all__ and datasets.dinucleotide_shuffle is dinucleotide_shuffle


def test_sites_read_planted_motifs_mask_and_refuse_other_masks():
    from deepscope import datasets

    data = datasets.load("planted_motifs", seed=3, n_samples=40, sequence_length=40, motif_length=5)
    starts, length = sites(data.mask_test)
    # oracle: the generator's own record of where it wrote each test sequence's class motif
    assert length == 5 and starts.tolist() == data.info["motif_start_test"]
    mask = torch.zeros(2, 4, 10)
    mask[0, :, 2:4] = 1
    mask[1, :, [1, 5]] = 1  # two bases, not contiguous
    assert sites(mask) is None
    mask[1] = 0  # a sequence without a site
    assert sites(mask) is None
    mask[1, :, 6:9] = 1  # sites of different lengths
    assert sites(mask) is None


def test_chance_precision_equals_counting_every_placement():
    # oracle: enumerate every start of a 12-base seqlet in 60 bases and count those sharing >= 3 bases
    # with a 6-base site, for sites at both ends and in the middle
    starts = torch.tensor([0, 5, 27, 54])
    hits = []
    for a in starts.tolist():
        shared = [min(t + 12, a + 6) - max(t, a) for t in range(60 - 12 + 1)]
        hits.append(sum(s >= 3 for s in shared) / 49)
    assert chance_precision(starts, 6, 12, 60, 3) == pytest.approx(sum(hits) / len(hits), abs=1e-12)
    assert chance_precision(starts, 6, 61, 60, 3) != chance_precision(starts, 6, 61, 60, 3)  # nan: no placement


def test_parts_on_the_sequence_fixture_without_planted_sites():
    fixture = make_fixture("sequence")
    parts = _genomics_parts(AuditContext(problem=fixture.problem()), None)
    labels = [part.cost["block"] for part in parts]
    assert labels == ["ISM logos", "DeepLIFT-SHAP logos", "Seqlets", "Motif recovery"]
    assert all(part.error is None for part in parts), [part.error for part in parts]
    ism_part, shap_part, seqlet_part, recovery_part = parts
    # each logo block holds an SVG with one glyph path per drawn base
    for part in (ism_part, shap_part):
        (figure,) = [block for block in part.blocks if isinstance(block, Figure)]
        assert figure.svg.startswith("<svg") and figure.svg.count("<path") > 10
        assert part.cost["passes"] > 0 and part.cost["seconds"] >= 0
    # the fixture's sequences have 20 bases: ISM makes 3L+1 forward passes per sequence (the fast
    # path's check batch adds at most one more per sequence)
    n, passes = ism_part.results["genomics_ism"]["sequences"], ism_part.results["genomics_ism"]["forward_passes"]
    assert n * 61 <= passes <= n * 62
    assert shap_part.results["genomics_deep_lift_shap"]["completeness_error"] < 1e-3  # summation to delta, float32
    assert seqlet_part.results["seqlets"]["method"] == "deep_lift_shap"
    (line,) = recovery_part.blocks
    assert isinstance(line, Text) and "not applicable" in line.text and "planted" in line.text
    assert recovery_part.cost["not_applicable"]


def test_a_model_deeplift_cannot_trace_gets_one_line_and_seqlets_fall_back_to_ism():
    from torch import nn

    from deepscope import Problem

    class DataDependent(nn.Module):  # a Python branch on the values: torch.fx cannot trace it
        def __init__(self):
            super().__init__()
            self.conv = nn.Conv1d(4, 2, 3)

        def forward(self, x):
            h = self.conv(x)
            if float(h.detach().sum()) > 1e9:
                h = h * 2
            return h.mean(-1)

    torch.manual_seed(0)
    x = torch.nn.functional.one_hot(torch.randint(0, 4, (12, 30)), 4).permute(0, 2, 1).float()
    y = torch.randint(0, 2, (12,))
    parts = _genomics_parts(AuditContext(problem=Problem(DataDependent(), (x, y))), None)
    shap_part = parts[1]
    assert shap_part.error is None and "not applicable" in shap_part.blocks[0].text
    assert parts[2].error is None and parts[2].results["seqlets"]["method"] == "ism"


@pytest.mark.slow
def test_audit_of_a_cnn_trained_on_planted_motifs_has_the_genomics_blocks(tmp_path):
    from deepscope import audit, datasets
    from deepscope.models import build
    from deepscope.models.trainer import train

    data = datasets.load("planted_motifs", seed=0, n_samples=400, sequence_length=60, motif_length=6, n_decoys=1)
    run = train(build("cnn1d", (4, 60), 2, pooling="max"), data, epochs=8, lr=1e-2, seed=0)
    paths = audit(run.model, data, out=tmp_path, sections=["attribution"])
    results = json.loads(paths.json.read_text())
    section = results["sections"]["attribution"]
    assert section["status"] != "error"
    found = section["results"]
    assert "block_errors" not in found
    assert found["genomics_ism"]["sequences"] >= 1 and found["genomics_deep_lift_shap"]["n_shuffles"] == 5
    # the trained CNN (global max pooling, test accuracy 0.98-1.0) looks at the class motif: its seqlets
    # sit on the planted sites (precision 0.73-0.84, recall 0.94-1.0 measured at 1 and 2 threads). The
    # oracle is chance: seqlets called the same way on random tracks of these 16 sequences have
    # precision 0.16-0.25 (recall 0.44-0.69, several seqlets per sequence), so precision > 0.5 fails a
    # model that does not attend to the motifs
    assert found["motif_recovery"]["precision"] > 0.5 and found["motif_recovery"]["recall"] > 0.5
    assert 0.15 < found["motif_recovery"]["chance_precision"] < 0.3  # about 13 of 49 placements hit a site
    page = paths.html.read_text()
    assert "ISM attribution logos" in page and "DeepLIFT-SHAP attribution logos" in page
    assert "Called seqlets" in page and "planted motif site" in page
    assert "ISM logos:" in page  # the cost line names the block


def test_parts_on_an_untrained_basset_with_an_n_column():
    from deepscope import Problem
    from deepscope.models import build

    torch.manual_seed(0)
    model = build("basset", (4, 120), 3, channels=(8, 8), kernel_sizes=(7, 5), pools=(2, 2), hidden=(8,)).eval()
    x = torch.nn.functional.one_hot(torch.randint(0, 4, (20, 120)), 4).permute(0, 2, 1).float()
    x[0, :, 10] = 0  # an N
    parts = _genomics_parts(AuditContext(problem=Problem(model, (x, torch.randint(0, 3, (20,))))), None)
    assert [part.error for part in parts] == [None] * 4
    shap = parts[1].results["genomics_deep_lift_shap"]
    assert shap["sequences"] >= 1 and shap["completeness_error"] < 1e-3  # summation to delta in float32
    # without planted sites the seqlet window is TF-MoDISco's 21 bases (L // 5 = 24 > 21) with flank 10
    assert (parts[2].results["seqlets"]["window"], parts[2].results["seqlets"]["flank"]) == (21, 10)
    assert parts[3].cost["not_applicable"]


def test_a_tiny_memory_budget_shrinks_the_genomics_chunks_and_leaves_the_values(monkeypatch):
    # oracle: the same blocks under the default budget; the chunk size only splits the rows of each
    # call, so ISM and DeepLIFT-SHAP values agree to float32 rounding of differently batched convolutions
    import deepscope.attribution._genomics as genomics
    from deepscope.attribution import _report_cost as cost_model
    from deepscope.attribution._prepare import DEFAULT_MAX_BATCH
    from deepscope.report.cost import PassCost

    fixture = make_fixture("sequence")
    calls = {"ism": [], "deep_lift_shap": []}
    values = {"ism": [], "deep_lift_shap": []}

    def spy(name, original, read):
        def wrapped(*args, **kwargs):
            calls[name].append(kwargs["max_batch"])
            result = original(*args, **kwargs)
            values[name].append(read(result))
            return result

        return wrapped

    monkeypatch.setattr(genomics, "ism", spy("ism", genomics.ism, lambda r: r.values))
    monkeypatch.setattr(genomics, "deep_lift_shap", spy("deep_lift_shap", genomics.deep_lift_shap, lambda r: r.values))

    def run():
        context = AuditContext(problem=fixture.problem())
        context.cache["report.pass_cost"] = PassCost(1e-6, 0.5e-6, 10, 8)  # every sequence fits: same inputs
        return _genomics_parts(context, None)

    default = run()
    saved = cost_model.example_bytes(fixture.model, fixture.problem().tensors("train", max_samples=1)[0])
    default_batch = min(cost_model.CHUNK_BYTES // saved, DEFAULT_MAX_BATCH)  # 256 MB: the 4096-row cap
    assert default_batch > 3
    monkeypatch.setattr(cost_model, "CHUNK_BYTES", 3 * saved)  # room for three examples' saved activations
    tiny = run()
    assert calls["ism"] == calls["deep_lift_shap"] == [default_batch, 3]
    assert tiny[0].results["genomics_ism"]["max_batch"] == tiny[1].results["genomics_deep_lift_shap"]["max_batch"] == 3
    for name in ("ism", "deep_lift_shap"):
        before, after = values[name]
        assert before.shape == after.shape
        torch.testing.assert_close(after, before, rtol=1e-5, atol=1e-6)
    assert default[0].results["genomics_ism"]["sequences"] == tiny[0].results["genomics_ism"]["sequences"]
