"""In-silico mutagenesis vs tangermeme 1.6 on a bpnet-lite BPNet and a Basset-style CNN (issue 12, item 4).

Same inputs on both sides (8 random sequences of 250 bp with two ``N`` columns, one thread):
deepscope's ``ism`` against tangermeme's ``saturation_mutagenesis(..., raw_outputs=True)``, both
running every single-base substitution (3L+1 rows per sequence, 4 letters at an ``N``).

tangermeme is timed at its best settings for this job, picked by one untimed-for-the-row trial of
each: its default (``fast=True``, which runs full passes for a job it expects under 30 s) and
``fast=True`` forced on (its fastISM through ``torch.export``, by setting the module constant
``_FAST_MIN_SECONDS`` to 0), each at ``batch_size`` 32 (default) and 128. The trial times of every
variant are in the row's notes.

Run: ``python -m bench.genomics_ism`` (writes bench/results/genomics_ism.json).
"""

from __future__ import annotations

import contextlib
import os
import time
import warnings

import torch

from bench.harness import compare_alternating, record
from deepscope.attribution import ism
from deepscope.models import Basset

SEQUENCES, LENGTH = 8, 250


def one_hot_sequences(seed: int = 0) -> torch.Tensor:
    """SEQUENCES random one-hot DNA sequences of LENGTH bp with two N columns (all zero); the genomics benches' inputs."""
    generator = torch.Generator().manual_seed(seed)
    x = torch.nn.functional.one_hot(torch.randint(0, 4, (SEQUENCES, LENGTH), generator=generator), 4)
    x = x.transpose(1, 2).float()
    x[2, :, 10] = 0  # two N positions
    x[5, :, 200] = 0
    return x


@contextlib.contextmanager
def _forced_fast(on: bool):
    import tangermeme.saturation_mutagenesis as module

    saved = module._FAST_MIN_SECONDS
    module._FAST_MIN_SECONDS = 0.0 if on else saved
    try:
        yield
    finally:
        module._FAST_MIN_SECONDS = saved


def _tangermeme(model, x, args, head, batch_size, forced):
    from tangermeme.saturation_mutagenesis import saturation_mutagenesis

    with _forced_fast(forced), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return saturation_mutagenesis(
            model, x, args=args or None, raw_outputs=True, batch_size=batch_size, device="cpu", func=head
        )


def _best_tangermeme(model, x, args, head):
    """Each variant once (after a warm-up call of the default); the fastest and all trial times."""
    variants = {
        f"{'fastISM forced' if forced else 'default'}, batch_size {size}": (size, forced)
        for forced in (False, True)
        for size in (32, 128)
    }
    _tangermeme(model, x, args, head, 32, False)
    trials = {}
    for name, (size, forced) in variants.items():
        start = time.perf_counter()
        _tangermeme(model, x, args, head, size, forced)
        trials[name] = time.perf_counter() - start
    best = min(trials, key=trials.get)
    return best, variants[best], trials


def _agreement(model, x, args, head, target_column: int) -> str:
    ours = ism(model, x, target=target_column, args=args, output_fn=head)
    y0, y_hat = _tangermeme(model, x, args, head, 32, False)
    theirs = (y_hat[..., target_column] - y0[:, None, None, target_column]) * (1 - x)
    error = float((ours.values - theirs).abs().max()) / float(theirs.abs().max())
    return f"max |deepscope − tangermeme| / max |tangermeme| = {error:.1e} ({ours.diagnostics['path']})"


def _row(task, model, x, args, head, repeats):
    best, (size, forced), trials = _best_tangermeme(model, x, args, head)
    agreement = _agreement(model, x, args, head, 0)
    row = compare_alternating(
        task,
        ours=lambda: ism(model, x, target=0, args=args, output_fn=head),
        reference=lambda: _tangermeme(model, x, args, head, size, forced),
        reference_name=f"tangermeme 1.6 saturation_mutagenesis ({best})",
        repeats=repeats,
        agreement=agreement,
        notes="tangermeme trial times: " + ", ".join(f"{name} {seconds:.2f} s" for name, seconds in trials.items()),
    )
    row["threads"] = torch.get_num_threads()
    return row


def bpnet_row(repeats: int = 5) -> dict:
    from bpnetlite import BPNet

    torch.manual_seed(0)
    model = BPNet(n_filters=32, n_layers=4, n_control_tracks=2, verbose=False).eval()
    x = one_hot_sequences()
    control = torch.rand(SEQUENCES, 2, LENGTH, generator=torch.Generator().manual_seed(1))
    return _row(
        f"ISM, bpnet-lite BPNet (32 filters, 4 dilated layers, 2 control tracks as args), {SEQUENCES} x {LENGTH} bp "
        "with 2 N, count head",
        model,
        x,
        (control,),
        lambda out: out[1],
        repeats,
    )


def basset_row(repeats: int = 5) -> dict:
    torch.manual_seed(0)
    model = Basset((4, LENGTH), 8, channels=(128, 64, 64), hidden=(256, 256)).eval()
    return _row(
        f"ISM, Basset-style CNN (conv 128x19, 64x11, 64x7, dense 256x2, 8 targets), {SEQUENCES} x {LENGTH} bp with 2 N",
        model,
        one_hot_sequences(),
        (),
        None,
        repeats,
    )


def main() -> None:
    torch.set_num_threads(1)
    rows = [bpnet_row(), basset_row()]
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    record(
        "genomics_ism",
        rows,
        command="python -m bench.genomics_ism",
        extra_markdown=(
            "Both sides run every substitution of every position (identity substitutions skipped), one "
            "thread; deepscope recomputes only each substitution's receptive field (exact: agreement "
            f"column); tangermeme at its fastest variant for the job (notes). Load average at the end: {load:.1f}."
        ),
    )


if __name__ == "__main__":
    main()
