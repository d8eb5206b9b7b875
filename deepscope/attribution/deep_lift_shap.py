"""DeepLIFT-SHAP: DeepLIFT averaged over many references per example, dinucleotide shuffles by default."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import nn

from deepscope._validation import check_float, check_int, check_seed
from deepscope.attribution._base import (
    DEFAULT_MAX_BATCH,
    Attribution,
    OutputFn,
    check_max_batch,
    finish,
    prepare,
    relative_completeness_error,
)
from deepscope.attribution._multi_input import MultiInputAttribution, packed_call, unpacked
from deepscope.attribution._registry import attribution_method
from deepscope.attribution.deeplift import WithArgs, check_args, paired_multipliers, prepare_graph, rows_of
from deepscope.data.shuffle import dinucleotide_shuffle
from deepscope.errors import DataError, invalid_parameter
from deepscope.registry import analysis

__all__ = ["deep_lift_shap"]


def _is_one_hot(x: torch.Tensor) -> bool:
    """(batch, alphabet, length) with every column one-hot or all zero (an ``N``)."""
    if x.dim() != 3:
        return False
    sums = x.sum(1)
    return bool(((x == 0) | (x == 1)).all()) and bool(((sums == 0) | (sums == 1)).all())


def _references(references: Any, x: torch.Tensor, n_shuffles: int, seed: int, owner: str) -> torch.Tensor:
    """``(batch, K, *features)``: given per example, shared ``(K, *features)``, dinucleotide shuffles of
    one-hot sequences, or (other inputs) one zero reference, DeepLIFT's default baseline."""
    if references is None:
        if not _is_one_hot(x):
            return torch.zeros_like(x).unsqueeze(1)
        return dinucleotide_shuffle(x, n_shuffles=n_shuffles, seed=seed)
    expected = f"a tensor of shape ({x.shape[0]}, K, {', '.join(map(str, x.shape[1:]))}) or (K, ...) shared by all"
    if not isinstance(references, torch.Tensor) or not references.is_floating_point():
        raise invalid_parameter("references", owner, expected, references)
    references = references.detach().to(device=x.device, dtype=x.dtype)
    if references.dim() == x.dim() and references.shape[1:] == x.shape[1:] and references.shape[0] >= 1:
        references = references.unsqueeze(0).expand(x.shape[0], *references.shape)
    if references.dim() != x.dim() + 1 or references.shape[0] != x.shape[0] or references.shape[2:] != x.shape[1:]:
        raise invalid_parameter("references", owner, expected, references)
    if references.shape[1] == 0 or not bool(torch.isfinite(references).all()):
        raise DataError(f"The 'references' of {owner} must hold at least one finite reference per example.")
    return references


def _all_references(
    references: Any, parts: Sequence[torch.Tensor], n_shuffles: int, seed: int, owner: str
) -> list[torch.Tensor]:
    """One ``(batch, K, *features)`` tensor per input, all with the same K: for one input as
    :func:`_references`; for several, a tuple of one reference set per input, or (None) shuffles of
    the one-hot inputs with zero references for the others, repeated to the shuffles' K."""
    if len(parts) == 1:
        return [_references(references, parts[0], n_shuffles, seed, owner)]
    if references is None:
        refs = [_references(None, part, n_shuffles, seed, owner) for part in parts]
        k = max(ref.shape[1] for ref in refs)
        return [ref.expand(-1, k, *ref.shape[2:]) if ref.shape[1] != k else ref for ref in refs]
    if not isinstance(references, tuple) or len(references) != len(parts):
        raise invalid_parameter(
            "references", owner, f"None or a tuple of {len(parts)} tensors (one per input)", references
        )
    refs = [_references(ref, part, n_shuffles, seed, owner) for ref, part in zip(references, parts)]
    if len({ref.shape[1] for ref in refs}) > 1:
        counts = [ref.shape[1] for ref in refs]
        raise invalid_parameter(
            "references", owner, "the same number of references K for every input (they are paired)", counts
        )
    return refs


@attribution_method(
    aliases=("deepshap", "dls"), claimed_axioms={"dummy", "linearity"}, report=None, takes=("tensor", "tuple")
)
@analysis(takes="model_inputs", family="attribution", fixture="sequence", example_kwargs={"n_shuffles": 3})
def deep_lift_shap(
    model: nn.Module,
    inputs: torch.Tensor | tuple[torch.Tensor, ...],
    target: Any = None,
    *,
    references: torch.Tensor | tuple[torch.Tensor, ...] | None = None,
    n_shuffles: int = 20,
    seed: int = 0,
    hypothetical: bool = False,
    args: tuple[Any, ...] = (),
    rescale_modules: Sequence[type] = (),
    eps: float = 1e-6,
    output_fn: OutputFn | None = None,
    max_batch: int = DEFAULT_MAX_BATCH,
) -> Attribution | MultiInputAttribution:
    """DeepLIFT-SHAP: φ = (1/K) Σ_k (x − r_k) ⊙ m_k, DeepLIFT against each of K references (Lundberg & Lee, 2017).

    DeepSHAP approximates SHAP values of F at x by averaging DeepLIFT's attributions over a
    background distribution of references; for DNA the references are dinucleotide-preserving
    shuffles of each sequence (Shrikumar et al., 2017; as ``tangermeme.deep_lift_shap``). Each
    reference obeys summation-to-delta, Σφ_k = F(x) − F(r_k), so Σφ = F(x) − mean_k F(r_k). The
    multipliers m_k come from :func:`deeplift`'s rules (rescale, max routing, softmax/logsumexp,
    products). All K references of a chunk of examples go through the model in one forward and
    one backward pass, and x itself once per example (not once per reference).

    For one-hot sequences (``(batch, alphabet, length)``, ``N`` = an all-zero column) the values
    are those of tangermeme: each position's total Σ_c (x − r_k)_c m_{k,c}, averaged over k, on
    the observed letter (0 elsewhere and at ``N``); with ``hypothetical=True`` the contribution
    each letter would have had, (1/K) Σ_k Σ_c (e_a − r_k)_c m_{k,c} for every letter a. For other
    inputs the values are (1/K) Σ_k (x − r_k) ⊙ m_k.

    Args:
        model, inputs, target, output_fn, max_batch: as for every method (``max_batch`` bounds the
            reference rows per pass: ⌊max_batch / K⌋ examples at a time, at least one). ``inputs``
            may be a tuple of float tensors (same batch length) for a model with several attributed
            inputs, ``model(x1, x2, ..., *args)``; each one-hot input is shown as above, the others
            as (1/K) Σ_k (x − r_k) ⊙ m_k, and the completeness error is over all inputs together.
        references: ``(batch, K, *features)`` per example or ``(K, *features)`` for all; None:
            ``n_shuffles`` dinucleotide shuffles of each sequence (``seed``-ed, ``N`` kept in place,
            :func:`deepscope.data.shuffle.dinucleotide_shuffle`) for one-hot sequences, one zero
            reference (DeepLIFT's default baseline) for other inputs. For a tuple of inputs a tuple
            of one such tensor per input, all with the same K (reference k of every input forms one
            joint reference, as in Captum's ``DeepLiftShap``); None shuffles the one-hot inputs and
            pairs them with zero references of the others.
        hypothetical: one-hot inputs only: the hypothetical contributions of every letter.
        args, rescale_modules: as for :func:`deeplift` (extra model arguments held fixed, module
            classes given the element-wise rescale rule as a whole).
        eps: below this |Δz| a rule uses the derivative at x instead of the secant (tangermeme's
            1e-6; :func:`deeplift` uses Captum's 1e-10).

    Returns:
        An :class:`Attribution`; diagnostics per example ``completeness_error`` (relative, of Σφ
        against F(x) − mean F(r_k)), ``delta`` (F(x) − mean F(r_k)) and ``convergence_delta`` (the
        largest |Σ_c,l (x − r_k) m_k − (F(x) − F(r_k))| over the references, as tangermeme reports).
        For a tuple of inputs a :class:`~deepscope.attribution._multi_input.MultiInputAttribution`.

    Example:
        >>> net = torch.nn.Sequential(torch.nn.Conv1d(4, 3, 5), torch.nn.ReLU(), torch.nn.Flatten(), torch.nn.Linear(36, 2))
        >>> x = torch.nn.functional.one_hot(torch.randint(0, 4, (2, 16)), 4).permute(0, 2, 1).float()
        >>> a = deep_lift_shap(net, x, target=0, n_shuffles=5)
        >>> bool(a.diagnostics["completeness_error"].max() < 1e-4)
        True
    """
    owner = "deep_lift_shap"
    n_shuffles = check_int(n_shuffles, "n_shuffles", owner, minimum=1)
    seed = check_seed(seed, owner)
    eps = check_float(eps, "eps", owner, minimum=0.0)
    max_batch = check_max_batch(max_batch, owner)
    if not isinstance(hypothetical, bool):
        raise invalid_parameter("hypothetical", owner, "True or False", hypothetical)
    packing, inputs, packed_model = packed_call(model, inputs, owner)
    batch = inputs.shape[0] if isinstance(inputs, torch.Tensor) and inputs.dim() >= 1 else 0
    args = check_args(args, batch, model, owner)
    runner = WithArgs(packed_model, args, batch) if args else packed_model
    probe_batch = max(max_batch, batch) if args else max_batch
    prepared = prepare(runner, inputs, target, owner=owner, output_fn=output_fn, max_batch=probe_batch)
    x, targets = prepared.inputs, prepared.targets
    parts = (x,) if packing is None else packing.unpack(x)
    one_hot = [_is_one_hot(part) for part in parts]
    if hypothetical and not all(one_hot):
        raise invalid_parameter("hypothetical", owner, "False for inputs that are not one-hot sequences", hypothetical)
    refs = _all_references(references, parts, n_shuffles, seed, owner)
    n, k, n_targets = x.shape[0], refs[0].shape[1], targets.shape[0]
    interpreter, graph_output_fn = prepare_graph(model, args, eps, rescale_modules, owner, output_fn, len(parts))

    values = [torch.empty((n_targets, *part.shape), dtype=x.dtype, device=x.device) for part in parts]
    at_input = torch.empty(n_targets, n, dtype=x.dtype, device=x.device)
    mean_reference = torch.empty_like(at_input)
    convergence = torch.empty_like(at_input)
    per_chunk = max(1, max_batch // k)
    for start in range(0, n, per_chunk):
        stop = min(start + per_chunk, n)
        rows = [part[start:stop] for part in parts]
        chunk_refs = [ref[start:stop] for ref in refs]
        flat_refs = [ref.flatten(0, 1) for ref in chunk_refs]
        multipliers, at_input[:, start:stop], at_refs = paired_multipliers(
            interpreter,
            rows[0] if packing is None else tuple(rows),
            flat_refs[0] if packing is None else tuple(flat_refs),
            rows_of(args, start, stop),
            targets[:, start:stop],
            graph_output_fn,
            owner,
        )
        multipliers = [multipliers] if packing is None else list(multipliers)
        at_refs = at_refs.unflatten(1, (stop - start, k))  # (T, chunk, K)
        totals = 0
        for i, (row, chunk_ref, multiplier) in enumerate(zip(rows, chunk_refs, multipliers)):
            multiplier = multiplier.unflatten(1, chunk_ref.shape[:2])  # (T, chunk, K, *features)
            contributions = (row.unsqueeze(1) - chunk_ref) * multiplier  # differences (chunk, K, *features)
            totals = totals + contributions.flatten(3).sum(3)  # (T, chunk, K), over all inputs
            if not one_hot[i]:
                values[i][:, start:stop] = contributions.mean(2)
            elif hypothetical:  # m_a − Σ_c r_c m_c, averaged over the references
                values[i][:, start:stop] = (multiplier - (chunk_ref * multiplier).sum(3, keepdim=True)).mean(2)
            else:
                values[i][:, start:stop] = contributions.sum(3, keepdim=True).mean(2) * row
        convergence[:, start:stop] = (totals - (at_input[:, start:stop, None] - at_refs)).abs().amax(2)
        mean_reference[:, start:stop] = at_refs.mean(2)
    values = values[0] if packing is None else packing.pack(values)
    delta = at_input - mean_reference
    diagnostics: dict[str, Any] = {"delta": delta, "convergence_delta": convergence, "references": k}
    if not hypothetical:  # hypothetical values are not contributions: they need not sum to the delta
        diagnostics["completeness_error"] = relative_completeness_error(
            values.flatten(2).sum(2), at_input, mean_reference
        )
    result = finish(
        model,
        values=values,
        targets=targets,
        multi=prepared.multi,
        method=owner,
        diagnostics=diagnostics,
        evaluations=prepared.evaluations + n * (k + 1),
        options={"n_shuffles": k, "seed": seed, "hypothetical": hypothetical, "eps": eps, "max_batch": max_batch},
    )
    return unpacked(result, packing)
