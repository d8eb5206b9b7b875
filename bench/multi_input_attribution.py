"""Attribution of a model with two inputs (image + metadata), side by side with Captum's tuple inputs (issue 12).

Same model and inputs on both sides: a random-init two-branch network, ``forward(image, metadata)``
with a CNN branch on 3 x 32 x 32 images (two conv layers, 16 and 32 channels, max pooling) and a
dense branch on 16 metadata features, concatenated into a two-layer head of 10 classes; 16
examples, float32, one thread, targets fixed. Each row times the whole call (deepscope's includes
its target checks, packing and completeness diagnostics):

* ``integrated_gradients`` with 32 Gauss-Legendre nodes, the joint path from a tuple of baselines
  (zeros for the image, the metadata mean for the metadata), against Captum's
  ``IntegratedGradients(..., method="gausslegendre", n_steps=32)`` with the same baselines (all
  512 path points in one batch on both sides);
* ``deeplift`` (rescale rule) against Captum's ``DeepLift`` with the same baselines;
* ``saliency`` against Captum's ``Saliency``.

Run: ``python -m bench.multi_input_attribution`` (writes bench/results/multi_input_attribution.json).
"""

from __future__ import annotations

import warnings

import torch
from torch import nn

from bench.harness import compare_alternating, record
from deepscope.attribution import deeplift, integrated_gradients, saliency

BATCH, STEPS, REPEATS = 16, 32, 7


class ImageAndMetadata(nn.Module):
    """``forward(image (B, 3, 32, 32), metadata (B, 16)) -> (B, 10)``."""

    def __init__(self) -> None:
        super().__init__()
        self.image = nn.Sequential(
            nn.Conv2d(3, 16, 3, padding=1),
            nn.ReLU(),
            nn.MaxPool2d(2),
            nn.Conv2d(16, 32, 3, padding=1),
            nn.ReLU(),
            nn.MaxPool2d(2),
            nn.Flatten(),
        )
        self.metadata = nn.Sequential(nn.Linear(16, 32), nn.ReLU())
        self.head = nn.Sequential(nn.Linear(32 * 8 * 8 + 32, 64), nn.ReLU(), nn.Linear(64, 10))

    def forward(self, image: torch.Tensor, metadata: torch.Tensor) -> torch.Tensor:
        return self.head(torch.cat([self.image(image), self.metadata(metadata)], dim=1))


def _largest_difference(ours, theirs) -> float:
    return max(float((a - b).abs().max()) for a, b in zip(ours, theirs, strict=True))


def main() -> None:
    from captum.attr import DeepLift, IntegratedGradients, Saliency

    torch.set_num_threads(1)
    torch.manual_seed(0)
    model = ImageAndMetadata().eval()
    generator = torch.Generator().manual_seed(1)
    inputs = (torch.rand(BATCH, 3, 32, 32, generator=generator), torch.randn(BATCH, 16, generator=generator))
    baselines = (torch.zeros_like(inputs[0]), inputs[1].mean(0, keepdim=True).expand_as(inputs[1]).contiguous())
    targets = torch.arange(BATCH) % 10
    warnings.simplefilter("ignore")  # Captum warns that it sets requires_grad on the inputs
    rows = []

    def ours_ig():
        return integrated_gradients(model, inputs, target=targets, baseline=baselines, steps=STEPS)

    def captum_ig():
        explainer = IntegratedGradients(model)
        return explainer.attribute(inputs, baselines, target=targets, method="gausslegendre", n_steps=STEPS)

    mine, theirs = ours_ig(), captum_ig()
    rows.append(
        compare_alternating(
            f"integrated gradients, two inputs (image 3x32x32 + 16 metadata), {BATCH} examples, {STEPS} steps",
            ours=ours_ig,
            reference=captum_ig,
            reference_name="Captum IntegratedGradients (tuple inputs)",
            repeats=REPEATS,
            agreement=f"max abs diff {_largest_difference(mine.values, theirs):.1e}",
            notes="joint path; relative completeness error (both inputs) median "
            f"{float(mine.diagnostics['completeness_error'].median()):.1e}",
        )
    )

    def ours_dl():
        return deeplift(model, inputs, target=targets, baseline=baselines)

    def captum_dl():
        return DeepLift(model).attribute(inputs, baselines, target=targets)

    mine, theirs = ours_dl(), captum_dl()
    _, captum_delta = DeepLift(model).attribute(inputs, baselines, target=targets, return_convergence_delta=True)
    ours_delta = mine.diagnostics["completeness_error"] * mine.diagnostics["delta"].abs()
    rows.append(
        compare_alternating(
            f"DeepLIFT (rescale), two inputs (image 3x32x32 + 16 metadata), {BATCH} examples",
            ours=ours_dl,
            reference=captum_dl,
            reference_name="Captum DeepLift (tuple inputs)",
            repeats=REPEATS,
            agreement=f"max abs diff {_largest_difference(mine.values, theirs):.1e}",
            notes=f"summation-to-delta |sum - dF| max: ours {float(ours_delta.max()):.1e}, Captum "
            f"{float(captum_delta.abs().max()):.1e} (its ReLU-then-MaxPool multipliers, docs/attribution.md)",
        )
    )

    def ours_saliency():
        return saliency(model, inputs, target=targets)

    def captum_saliency():
        return Saliency(model).attribute(inputs, target=targets)

    mine, theirs = ours_saliency(), captum_saliency()
    rows.append(
        compare_alternating(
            f"saliency, two inputs (image 3x32x32 + 16 metadata), {BATCH} examples",
            ours=ours_saliency,
            reference=captum_saliency,
            reference_name="Captum Saliency (tuple inputs)",
            repeats=REPEATS,
            agreement=f"max abs diff {_largest_difference(mine.values, theirs):.1e}",
        )
    )
    for row in rows:
        print(
            f"{row['task']}: ours {row['deepscope_median_s']:.4f} s, {row['reference']} "
            f"{row['reference_median_s']:.4f} s, x{row['speedup']:.2f}, {row['agreement']}"
        )
    record("multi_input_attribution", rows, command="python -m bench.multi_input_attribution")


if __name__ == "__main__":
    main()
