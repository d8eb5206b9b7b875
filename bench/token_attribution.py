"""Token attributions on a small HuggingFace BERT: layer IG against Captum, and AttnLRP's cost (issue 12, item 3).

Same model and inputs on both sides (BertForSequenceClassification, hidden 64, 2 layers, 4 heads,
default ``sdpa`` attention, random init; 8 sequences of 32 tokens, the last 8 of every other one
padded; float32, one thread):

* ``layer_integrated_gradients`` at the word embeddings from the [PAD] sequence, 32 Gauss-Legendre
  nodes, against Captum's ``LayerIntegratedGradients(..., method="gausslegendre", n_steps=32)`` on
  the same layer and baseline; both evaluate all 256 path points in one batch.
* ``attn_lrp`` (one forward pass under the rule mode, one modified backward) against one plain
  forward and backward at the same layer (``layer_gradient_x_activation``): what the rules cost.

Run: ``python -m bench.token_attribution`` (writes bench/results/token_attribution.json).
"""

from __future__ import annotations

import os

import torch

from bench.harness import compare_alternating, record
from deepscope.attribution import attn_lrp, layer_gradient_x_activation, layer_integrated_gradients

SEQUENCES, LENGTH, STEPS = 8, 32, 32


def _model() -> torch.nn.Module:
    import transformers

    config = transformers.BertConfig(
        vocab_size=1000,
        hidden_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        intermediate_size=128,
        max_position_embeddings=64,
        num_labels=3,
        pad_token_id=0,
    )
    torch.manual_seed(0)
    return transformers.BertForSequenceClassification(config).eval()


def _inputs() -> dict[str, torch.Tensor]:
    generator = torch.Generator().manual_seed(0)
    ids = torch.randint(5, 1000, (SEQUENCES, LENGTH), generator=generator)
    ids[:, 0] = 101
    mask = torch.ones_like(ids)
    mask[1::2, -8:] = 0
    ids[1::2, -8:] = 0
    return {"input_ids": ids, "attention_mask": mask}


def main(repeats: int = 7) -> None:
    torch.set_num_threads(1)
    model, inputs = _model(), _inputs()
    logits = lambda out: out.logits  # noqa: E731
    from captum.attr import LayerIntegratedGradients

    layer = model.bert.embeddings.word_embeddings
    lig = LayerIntegratedGradients(lambda ids, mask: model(input_ids=ids, attention_mask=mask).logits, layer)

    def ours():
        return layer_integrated_gradients(model, inputs, target=1, baseline=0, steps=STEPS, output_fn=logits)

    def captum():
        return lig.attribute(
            inputs["input_ids"],
            baselines=torch.zeros_like(inputs["input_ids"]),
            target=1,
            additional_forward_args=(inputs["attention_mask"],),
            n_steps=STEPS,
            method="gausslegendre",
        )

    mine, theirs = ours().diagnostics["layer_attributions"], captum().detach()
    difference = float((mine - theirs).abs().max() / theirs.abs().max())
    rows = [
        compare_alternating(
            f"layer integrated gradients, BERT (64 hidden, 2 layers), {SEQUENCES}x{LENGTH} tokens, {STEPS} steps",
            ours=ours,
            reference=captum,
            reference_name="Captum LayerIntegratedGradients (gausslegendre)",
            repeats=repeats,
            agreement=f"max |difference| / max |Captum| = {difference:.1e} (float32)",
        )
    ]
    result = attn_lrp(model, inputs, target=1, output_fn=logits)
    untracked = float(result.diagnostics["untracked"].abs().max() / result.diagnostics["explained"].abs().max())
    rows.append(
        compare_alternating(
            f"attn_lrp, BERT (64 hidden, 2 layers), {SEQUENCES}x{LENGTH} tokens",
            ours=lambda: attn_lrp(model, inputs, target=1, output_fn=logits),
            reference=lambda: layer_gradient_x_activation(model, inputs, target=1, output_fn=logits),
            reference_name="deepscope layer_gradient_x_activation (one plain forward + backward)",
            repeats=repeats,
            agreement=f"relevance accounted for: max |untracked| / max |F(x)| = {untracked:.1e}",
            notes="the 'speedup' column is the plain pass's time over AttnLRP's: below 1 is the rules' overhead",
        )
    )
    for row in rows:
        row["threads"] = torch.get_num_threads()
    load = os.getloadavg()[0]
    record(
        "token_attribution",
        rows,
        command="python -m bench.token_attribution",
        extra_markdown=f"One thread, float32, medians of {repeats} alternating repeats. Load average at the end: {load:.1f}.",
    )


if __name__ == "__main__":
    main()
