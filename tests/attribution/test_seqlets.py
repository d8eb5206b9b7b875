"""Seqlet calling (TF-MoDISco's windowed-sum procedure) and recovery of planted motifs."""

import math

import pytest
import torch

from deepscope.attribution import ism
from deepscope.attribution.seqlets import Seqlets, call_seqlets, motif_recovery
from deepscope.errors import DataError, InvalidParameterError


def peaks_track(n=30, length=200, seed=0, dtype=torch.float32):
    """Laplace noise (scale 0.1) with one block of +1 over 8 positions per sequence, at a known start."""
    torch.manual_seed(seed)
    track = torch.distributions.Laplace(0.0, 0.1).sample((n, length)).to(dtype)
    starts = [(i * 37) % 170 + 15 for i in range(n)]
    for i, p in enumerate(starts):
        track[i, p : p + 8] += 1.0
    return track, starts


def test_hand_made_peaks_are_the_strongest_seqlets():
    # oracle: the planted blocks (sum 8 against noise windows of sd ~0.4) are each sequence's first seqlet,
    # centred on the block: window 8 at the block's start, plus 3 flanking positions each side
    track, starts = peaks_track()
    seqlets = call_seqlets(track, window_size=8, flank=3)
    first = {}
    for i, s, e in zip(seqlets.example.tolist(), seqlets.start.tolist(), seqlets.end.tolist()):
        first.setdefault(i, (s, e))
    assert first == {i: (p - 3, p + 11) for i, p in enumerate(starts)}
    strongest = seqlets.attribution[[seqlets.example.tolist().index(i) for i in range(30)]]
    truth = torch.stack([track[i, p : p + 8].sum() for i, p in enumerate(starts)]).double()
    torch.testing.assert_close(strongest, truth)
    recovery = motif_recovery(seqlets, starts, 8)
    assert recovery.recall == 1.0 and bool(recovery.site_hits.all())


def test_same_seqlets_as_tangermeme():
    # oracle: tangermeme 1.6's tfmodisco_seqlets on the same float32 track; sums agree to float32 rounding
    seqlet = pytest.importorskip("tangermeme.seqlet")
    track, _ = peaks_track(seed=1)
    theirs = seqlet.tfmodisco_seqlets(track.clone(), window_size=8, flank=3)
    mine = call_seqlets(track, window_size=8, flank=3)
    key = lambda rows: sorted(rows)  # noqa: E731
    assert key(zip(mine.example.tolist(), mine.start.tolist(), mine.end.tolist())) == key(
        zip(theirs.example_idx.tolist(), theirs.start.tolist(), theirs.end.tolist())
    )
    torch.testing.assert_close(
        mine.attribution.sort().values, torch.tensor(sorted(theirs.attribution), dtype=torch.float64), atol=1e-5, rtol=0
    )


def test_motif_recovery_by_hand():
    # sequence 0: site [5, 11), seqlet [3, 13) shares 6 bases; sequence 1: site [10, 16), seqlets [40, 50)
    # (no overlap) and [13, 23) (3 bases = ceil(6 / 2): a hit); sequence 2: site never covered
    seqlets = Seqlets(
        torch.tensor([0, 1, 1]),
        torch.tensor([3, 40, 13]),
        torch.tensor([13, 50, 23]),
        torch.zeros(3),
        (-1.0, 1.0),
        6,
        2,
    )
    recovery = motif_recovery(seqlets, [5, 10, 30], 6)
    assert recovery.seqlet_hits.tolist() == [True, False, True]
    assert recovery.site_hits.tolist() == [True, True, False]
    assert recovery.precision == pytest.approx(2 / 3) and recovery.recall == pytest.approx(2 / 3)
    strict = motif_recovery(seqlets, [5, 10, 30], 6, min_overlap=4)
    assert strict.seqlet_hits.tolist() == [True, False, False]
    empty = Seqlets(*(torch.zeros(0, dtype=torch.long),) * 3, torch.zeros(0), (-1.0, 1.0), 6, 2)
    assert math.isnan(motif_recovery(empty, [1], 6).precision)


@pytest.mark.slow
def test_ism_seqlets_recover_planted_motifs():
    # a small CNN trained on planted_motifs reaches ~100% test accuracy; its ISM position importance,
    # called into seqlets, must find the class motif (not the two decoys) in at least 80% of sequences
    # (measured: 34/40; the misses are sequences the model is so sure of that every effect is small
    # and a threshold shared by all sequences passes none of their windows), and the strongest seqlet
    # of a sequence must sit on the motif in at least 90% of the sequences that have one
    from deepscope.data.planted import planted_motifs
    from deepscope.models import CNN1d, train

    torch.set_num_threads(1)
    data = planted_motifs(seed=0, n_samples=600)
    torch.manual_seed(0)
    net = CNN1d((4, 100), 2, channels=(16,), kernel_size=9, hidden=0, pooling="max", batch_norm=False)
    model = train(net, data, epochs=8, lr=3e-3).model.eval()
    x, y = data.x_test[:40], data.y_test[:40]
    assert float((model(x).argmax(1) == y).float().mean()) >= 0.9
    importance = ism(model, x, target=y).diagnostics["position_importance"]
    seqlets = call_seqlets(importance, window_size=8, flank=2)
    starts = data.info["motif_start_test"][:40]
    recovery = motif_recovery(seqlets, starts, 8)
    assert recovery.recall >= 0.8, recovery.summary()
    first = [seqlets.example.tolist().index(i) for i in range(40) if i in seqlets.example.tolist()]
    assert float(recovery.seqlet_hits[first].float().mean()) >= 0.9, recovery.summary()


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"attributions": torch.zeros(5)}, "attributions"),
        ({"window_size": 0}, "window_size"),
        ({"window_size": 8, "flank": 100}, "flank"),
        ({"target_fdr": 1.5}, "target_fdr"),
        ({"min_passing_frac": 0.5, "max_passing_frac": 0.1}, "min_passing_frac"),
    ],
)
def test_bad_arguments_are_refused(kwargs, match):
    options = {"attributions": peaks_track(n=3)[0], **kwargs}
    with pytest.raises(InvalidParameterError, match=match):
        call_seqlets(**options)


def test_constant_and_non_finite_tracks_are_refused():
    with pytest.raises(DataError, match="constant"):
        call_seqlets(torch.ones(3, 50), window_size=5, flank=1)
    with pytest.raises(DataError, match="NaN"):
        call_seqlets(torch.full((3, 50), float("nan")), window_size=5, flank=1)
    with pytest.raises(InvalidParameterError, match="site_starts"):
        motif_recovery(call_seqlets(peaks_track(n=3)[0], window_size=8, flank=3), [1], 8)
