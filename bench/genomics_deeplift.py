"""DeepLIFT-SHAP vs tangermeme 1.6 on a bpnet-lite BPNet and a Basset-style CNN (issue 12, item 4).

Same work on both sides: 8 random sequences of 250 bp with two ``N`` columns, the SAME 20
dinucleotide-shuffled references per sequence (one tensor, made once by
``deepscope.data.shuffle.dinucleotide_shuffle`` and passed to both), one thread, float32.
deepscope's ``deep_lift_shap(..., references=refs)`` against tangermeme's
``deep_lift_shap(..., references=refs)`` (default output: attributions projected on the observed
base). tangermeme is timed at its faster ``batch_size`` (pairs per pass) of 32 (its default) and
160 (every pair of the 8 sequences at once), picked by one untimed trial of each (notes).

Rows: the BPNet count head (control tracks as ``args``), the BPNet profile head (bpnet-lite's
``ProfileWrapper``, ``_ProfileLogitScaling`` given the rescale rule on both sides as bpnet-lite's
own ``attribute.deep_lift_shap`` does), and the Basset CNN.

Run: ``python -m bench.genomics_deeplift`` (writes bench/results/genomics_deeplift.json).
"""

from __future__ import annotations

import os
import time
import warnings

import torch

from bench.harness import compare_alternating, record
from deepscope.attribution.deep_lift_shap import deep_lift_shap
from deepscope.data.shuffle import dinucleotide_shuffle
from deepscope.models import Basset

SEQUENCES, LENGTH, SHUFFLES = 8, 250, 20


def _inputs(seed: int = 0) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    x = torch.nn.functional.one_hot(torch.randint(0, 4, (SEQUENCES, LENGTH), generator=generator), 4)
    x = x.transpose(1, 2).float()
    x[2, :, 10] = 0  # two N positions
    x[5, :, 200] = 0
    return x


def _tangermeme(model, x, references, args, batch_size, extra):
    from tangermeme.deep_lift_shap import deep_lift_shap as theirs

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return theirs(
            model,
            x,
            args=args or None,
            references=references,
            batch_size=batch_size,
            device="cpu",
            only_warn=True,
            **extra,
        )


def _row(task, model, wrapped, x, args, head, extra, ours_options):
    references = dinucleotide_shuffle(x, n_shuffles=SHUFFLES, seed=0)

    def ours():
        return deep_lift_shap(model, x, target=0, references=references, args=args, output_fn=head, **ours_options)

    trials = {}
    _tangermeme(wrapped, x, references, args, 32, extra)  # warm-up
    for size in (32, SEQUENCES * SHUFFLES):
        start = time.perf_counter()
        _tangermeme(wrapped, x, references, args, size, extra)
        trials[size] = time.perf_counter() - start
    best = min(trials, key=trials.get)
    theirs = _tangermeme(wrapped, x, references, args, best, extra)
    got = ours()
    error = float((got.values - theirs).abs().max()) / float(theirs.abs().max())
    row = compare_alternating(
        task,
        ours=ours,
        reference=lambda: _tangermeme(wrapped, x, references, args, best, extra),
        reference_name=f"tangermeme 1.6 deep_lift_shap (batch_size {best})",
        repeats=9,
        agreement=(
            f"max |deepscope − tangermeme| / max |tangermeme| = {error:.1e}; deepscope's largest convergence delta "
            f"{float(got.diagnostics['convergence_delta'].max()):.1e}"
        ),
        notes="tangermeme trial times: " + ", ".join(f"batch_size {s}: {t:.2f} s" for s, t in trials.items()),
    )
    row["threads"] = torch.get_num_threads()
    return row


def _bpnet():
    from bpnetlite import BPNet

    torch.manual_seed(0)
    return BPNet(n_filters=32, n_layers=4, n_control_tracks=2, verbose=False).eval()


def bpnet_count_row() -> dict:
    from bpnetlite.bpnet import CountWrapper

    model = _bpnet()
    control = torch.rand(SEQUENCES, 2, LENGTH, generator=torch.Generator().manual_seed(1))
    return _row(
        f"DeepLIFT-SHAP, bpnet-lite BPNet (32 filters, 4 dilated layers, 2 control tracks as args), {SEQUENCES} x "
        f"{LENGTH} bp with 2 N, {SHUFFLES} shuffles each, count head",
        model,
        CountWrapper(model),
        _inputs(),
        (control,),
        lambda out: out[1],
        {},
        {},
    )


def bpnet_profile_row() -> dict:
    from bpnetlite.bpnet import ProfileWrapper, _ProfileLogitScaling
    from tangermeme.deep_lift_shap import _nonlinear

    model = ProfileWrapper(_bpnet())
    control = torch.rand(SEQUENCES, 2, LENGTH, generator=torch.Generator().manual_seed(1))
    return _row(
        f"DeepLIFT-SHAP, bpnet-lite BPNet as above, profile head (ProfileWrapper), {SEQUENCES} x {LENGTH} bp, "
        f"{SHUFFLES} shuffles each",
        model,
        model,
        _inputs(),
        (control,),
        None,
        {"additional_nonlinear_ops": {_ProfileLogitScaling: _nonlinear}},
        {"rescale_modules": (_ProfileLogitScaling,)},
    )


def basset_row() -> dict:
    torch.manual_seed(0)
    model = Basset((4, LENGTH), 8, channels=(128, 64, 64), hidden=(256, 256)).eval()
    return _row(
        f"DeepLIFT-SHAP, Basset-style CNN (conv 128x19, 64x11, 64x7, dense 256x2, 8 targets), {SEQUENCES} x {LENGTH} "
        f"bp with 2 N, {SHUFFLES} shuffles each",
        model,
        model,
        _inputs(),
        (),
        None,
        {},
        {},
    )


def main() -> None:
    torch.set_num_threads(1)
    rows = [bpnet_count_row(), bpnet_profile_row(), basset_row()]
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    record(
        "genomics_deeplift",
        rows,
        command="python -m bench.genomics_deeplift",
        extra_markdown=(
            "Both sides explain every sequence against the same 20 references, one thread, float32; deepscope runs "
            "each sequence once and all its references in one forward and one backward pass (the multipliers are the "
            f"same for a sequence and its reference, so only the reference rows are differentiated). Load average at "
            f"the end: {load:.1f}."
        ),
    )


if __name__ == "__main__":
    main()
