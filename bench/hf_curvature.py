"""Curvature through fused attention: the cost of the math kernel, and of looking for attention.

Rows:
* Hutchinson trace (20 Hessian-vector products) of a tiny HF BERT with its default ``sdpa``
  attention (deepscope runs it on PyTorch's math kernel, :mod:`deepscope._attention`) against the
  same model and weights with ``attn_implementation="eager"`` (plain matmul/softmax attention).
* 50 Hessian-vector products of a small MLP (no attention): the operator as shipped (the first
  product watches for attention, later ones enter no context) against the same operator with the
  attention handling switched off, i.e. the cost the attention support adds to models without it.

Both sides run the same products on the same inputs, alternating call by call, one thread.

Run: ``python -m bench.hf_curvature``
"""

from __future__ import annotations

import contextlib
import sys
from pathlib import Path

import torch

from bench.harness import compare_alternating, record
from deepscope import Problem
from deepscope.curvature import hessian_eigenvalues, hessian_trace
from deepscope.curvature.hvp import HessianOperator

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
import hf_models  # noqa: E402  (the tests' tiny HF builders: random init, nothing downloaded)


class _NoAttentionHandling:
    """A SecondOrder that does nothing (the operator before attention support)."""

    seen = False

    def __call__(self):
        return contextlib.nullcontext()


def main() -> None:
    torch.set_num_threads(1)
    model = hf_models.tiny_bert()
    inputs, labels = hf_models.token_batch(16, seq_len=16, seed=0)
    sdpa = Problem(model, (inputs, labels), output_fn=lambda out: out.logits)
    eager = Problem(hf_models.eager_copy(model), (inputs, labels), output_fn=lambda out: out.logits)

    def trace(problem):
        return lambda: hessian_trace(problem, method="hutchinson", rel_tol=1e-12, max_hvps=20, seed=0)

    ours, reference = trace(sdpa)(), trace(eager)()
    top = [hessian_eigenvalues(problem, tol=1e-4).eigenvalues[0] for problem in (sdpa, eager)]
    rows = [
        compare_alternating(
            "Hutchinson trace, 20 HVPs, tiny HF BERT (2 layers, hidden 32, 16×16 tokens), sdpa on the math kernel",
            ours=trace(sdpa),
            reference=trace(eager),
            reference_name="same model, eager attention",
            repeats=5,
            agreement=(
                f"trace rel. diff {abs(ours.trace - reference.trace) / abs(reference.trace):.1e}; "
                f"top eigenvalue rel. diff {abs(top[0] - top[1]) / abs(top[1]):.1e}"
            ),
            notes="float32; the eager model is the oracle of the tests (tests/curvature/test_hf_models.py)",
        )
    ]

    torch.manual_seed(0)
    mlp = torch.nn.Sequential(
        torch.nn.Linear(20, 64), torch.nn.Tanh(), torch.nn.Linear(64, 64), torch.nn.Tanh(), torch.nn.Linear(64, 5)
    )
    problem = Problem(mlp, (torch.randn(64, 20), torch.randint(0, 5, (64,))))
    shipped, bare = HessianOperator.from_problem(problem), HessianOperator.from_problem(problem)
    bare.second_order = _NoAttentionHandling()
    vector = torch.randn(shipped.n_params)
    shipped.matvec(vector)  # the first product watches for attention (finds none)

    def products(operator):
        def run():
            for _ in range(50):
                operator.matvec(vector)

        return run

    rows.append(
        compare_alternating(
            "50 HVPs, MLP 20-64-64-5 (5.8k params, 64 samples), no attention",
            ours=products(shipped),
            reference=products(bare),
            reference_name="same operator without the attention handling",
            repeats=15,
            agreement=f"products equal: {bool(torch.equal(shipped.matvec(vector), bare.matvec(vector)))}",
            notes="the cost attention support adds to a model without attention (speedup ≈ 1 means none)",
        )
    )
    record("hf_curvature", rows, command="python -m bench.hf_curvature")
    for row in rows:
        print(row)


if __name__ == "__main__":
    main()
