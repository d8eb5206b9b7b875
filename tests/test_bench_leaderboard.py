"""bench/leaderboard.py: which methods run on which inputs, and how a method that cannot apply is shown."""

import torch

from bench.leaderboard import select_methods, to_markdown
from deepscope.attribution import METHODS
from deepscope.attribution._registry import REGISTRY, is_one_hot, is_tokens

TOKEN_ONLY = {"layer_integrated_gradients", "layer_gradient_x_activation", "attn_lrp"}


def _names(inputs):
    chosen, skipped = select_methods(inputs)
    return [name for name, _ in chosen], dict(skipped)


def test_features_skip_the_token_only_methods_and_ism_with_a_note():
    for inputs in (torch.randn(3, 5), torch.rand(3, 1, 6, 6)):  # tabular rows, images
        chosen, skipped = _names(inputs)
        assert set(skipped) == TOKEN_ONLY | {"ism"}
        assert "embedding" in skipped["attn_lrp"] and "one-hot" in skipped["ism"]
        # every registered method is either run or skipped, in registration order
        assert chosen == [name for name in METHODS if name not in skipped]


def test_one_hot_sequences_run_ism_and_token_ids_only_the_layer_methods():
    x = torch.nn.functional.one_hot(torch.randint(0, 4, (3, 12)), 4).permute(0, 2, 1).float()
    chosen, skipped = _names(x)
    assert "ism" in chosen and set(skipped) == TOKEN_ONLY
    ids = torch.randint(0, 10, (3, 7))
    chosen, skipped = _names(ids)
    # oracle: the registry's own declaration of which methods take tokens
    assert set(chosen) == {
        name for name, spec in REGISTRY.items() if spec.report and spec.report.shown_when is is_tokens
    }
    assert set(chosen) == TOKEN_ONLY and "token ids" in skipped["saliency"]
    assert REGISTRY["ism"].report.shown_when is is_one_hot


def test_skipped_methods_are_listed_after_the_scored_ones():
    scored = {
        "method": "saliency",
        "auroc": (0.9, 0.01),
        "precision": (0.8, 0.02),
        "deletion_auc": (0.1, 0.01),
        "insertion_auc": (0.7, 0.01),
        "faithfulness_correlation": (0.3, 0.05),
        "sanity": (True, 0.1),
        "seconds": 0.01,
    }
    table = to_markdown("### toy", [{"method": "attn_lrp", "skipped": "token models only"}, scored])
    lines = table.splitlines()
    assert (
        lines[4].startswith("| saliency | 0.900")
        and lines[5] == "| attn_lrp | not run: token models only | | | | | | |"
    )
