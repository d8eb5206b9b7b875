"""Hessian- and Gauss-Newton-vector products of a model's mean loss, on flat parameter vectors.

The Hessian of the mean loss ``L(θ) = (1/N) Σ_i ℓ(f(x_i; θ), y_i)`` over ``N`` samples is applied
to a vector without forming it (Pearlmutter, 1994): ``Hv = ∇_θ (∇_θ L · v)``. Two ways:

* **double backward** — one gradient with ``create_graph=True``, then one backward of ``g·v``
  per product. For a fixed batch the gradient graph is kept, so each further product costs one
  backward pass only.
* **forward-over-reverse** — ``torch.func.jvp`` of ``torch.func.grad`` (no graph kept; lower peak
  memory, usually a little slower on CPU).

The generalised Gauss-Newton matrix ``G = Jᵀ H_ℓ J`` (Schraudolph, 2002), where ``J`` is the
Jacobian of the outputs and ``H_ℓ`` the Hessian of the loss in the outputs, is positive
semi-definite for convex losses; ``Gv`` is one jvp, one output-space Hessian product and one vjp.

Over several batches the products are summed with weights ``n_b / N`` (the loss is the mean over
all samples); batches are streamed, never all held at once, and split into chunks of rows (same
weights) whose gradient graph fits :data:`~deepscope.curvature._memory.GRAPH_BYTES` (a BERT-small
encoder's 64 sequences held 7.1 GB at once). A list of parameter names restricts the operator to
that block (the other parameters stay fixed).

Inputs may be a tensor or a dict of tensors (``model(**x)``, token ids stay integers), and
``output_fn`` picks the scores from a tuple/dict/``ModelOutput``. Parameters tied between modules
(GPT-2's output layer and input embedding) are one parameter of the operator, under their first
name: ``functional_call`` substitutes it everywhere it is used, so ``H`` is the Hessian in the
shared weight. Fused attention (``scaled_dot_product_attention``) runs on PyTorch's math kernel
during the products (:func:`deepscope._attention.math_attention`), since the fused kernels have no
double-backward or forward-mode derivative; ``fused_attention`` records that it happened.

Example:
    >>> import torch
    >>> from deepscope import Problem
    >>> net = torch.nn.Linear(3, 1, bias=False)
    >>> x = torch.randn(20, 3)
    >>> problem = Problem(net, (x, torch.randn(20, 1)), loss="mse")
    >>> operator = HessianOperator.from_problem(problem)
    >>> torch.allclose(operator.matvec(torch.ones(3)), 2 * x.T @ x @ torch.ones(3) / 20, atol=1e-5)
    True
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

import torch
from torch import nn

from deepscope._inputs import Inputs, slice_rows
from deepscope._outputs import OutputFn
from deepscope._validation import check_choice, check_int
from deepscope.curvature._base import (
    Batches,
    ParameterSpace,
    SecondOrder,
    check_names,
    fixed_batches,
    functional_outputs,
)
from deepscope.curvature._memory import measured_rows
from deepscope.errors import DataError, DeepscopeError, invalid_parameter
from deepscope.registry import analysis

if TYPE_CHECKING:
    from deepscope.problem import Problem

__all__ = [
    "ParameterSpace",
    "HessianOperator",
    "hessian_vector_product",
    "gauss_newton_vector_product",
    "dense_hessian",
]

LossFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
_METHODS = ("auto", "double_backward", "forward_over_reverse")
_KINDS = ("hessian", "gauss_newton")


class HessianOperator:
    """The Hessian (or Gauss-Newton matrix) of a mean loss as a linear operator on flat vectors.

    Args:
        model: the module evaluated with ``torch.func.functional_call`` (never modified).
        loss_fn: ``(output, target) -> scalar`` mean loss of one batch.
        params: base point, a dict of tensors by name (detached; every trainable parameter).
        batches: a callable returning a fresh iterable of ``(x, y)`` batches (streamed per product).
        buffers: the module's buffers (copied so that train-mode BatchNorm cannot change them).
        parameter_names: restrict the operator to these parameters (default: all of ``params``).
        kind: "hessian" or "gauss_newton".
        method: "double_backward", "forward_over_reverse" or "auto" (double backward, with the
            gradient graph kept when all samples fit in one batch).
        n_samples: total number of samples ``batches`` yields, when known (saves a pass over the data).
        output_fn: picks the scores the loss reads from a model output that is not one tensor.
        max_batch: rows per chunk of a product (default: as many as keep one chunk's gradient graph
            under :data:`~deepscope.curvature._memory.GRAPH_BYTES`, measured on the first product;
            the whole batch under a train-mode BatchNorm, whose batch statistics couple the rows).

    Attributes:
        n_params: dimension of the operator; n_products: products applied so far (one product is
        one application to one vector over all samples); n_samples: number of samples;
        fused_attention: True once a product ran ``scaled_dot_product_attention`` (on the math kernel).
    """

    def __init__(
        self,
        model: nn.Module,
        loss_fn: LossFn,
        params: Mapping[str, torch.Tensor],
        batches: Batches,
        *,
        buffers: Mapping[str, torch.Tensor] | None = None,
        parameter_names: Sequence[str] | None = None,
        kind: str = "hessian",
        method: str = "auto",
        owner: str = "HessianOperator",
        n_samples: int | None = None,
        output_fn: OutputFn | None = None,
        max_batch: int | None = None,
    ) -> None:
        check_choice(kind, "kind", owner, _KINDS)
        check_choice(method, "method", owner, _METHODS)
        self._rows = max_batch if max_batch is None else check_int(max_batch, "max_batch", owner, minimum=1)
        self.model, self.loss_fn, self.kind, self.owner = model, loss_fn, kind, owner
        self.output_fn = output_fn
        self.second_order = SecondOrder()  # fused attention on the math kernel during products
        self.method = "double_backward" if method == "auto" else method
        self.base = {n: p.detach() for n, p in params.items()}
        self.buffers = {n: b.detach().clone() for n, b in (buffers or {}).items()}
        names = list(self.base) if parameter_names is None else list(parameter_names)
        check_names(self.base, names, owner)
        self.space = ParameterSpace({n: self.base[n] for n in names})
        self.n_params = self.space.numel
        self.dtype, self.device = self.base[names[0]].dtype, self.base[names[0]].device
        self._batches = batches
        self.n_products = 0
        self._checked = False
        self._cached: list[tuple[float, list[torch.Tensor], list[torch.Tensor]]] | None = None
        cached: list[tuple[Inputs, torch.Tensor]] = []
        counted = 0
        for x, y in batches():  # only the first two batches are read when n_samples is known
            counted += len(y)
            if len(cached) < 2:
                cached.append((x, y))
            if len(cached) == 2 and n_samples is not None:
                break
        self.n_samples = counted if n_samples is None or len(cached) == 1 else n_samples
        if self.n_samples == 0:
            raise DataError(f"{owner} needs at least one sample.")
        # a single batch: keep its gradient graph across products (one backward per product).
        self._single_batch = cached[0] if len(cached) == 1 else None

    # --------------------------------------------------------------------------- construction
    @classmethod
    def from_problem(
        cls,
        problem: Problem,
        *,
        split: str = "train",
        max_samples: int | None = None,
        batch_size: int | None = None,
        parameter_names: Sequence[str] | None = None,
        kind: str = "hessian",
        method: str = "auto",
        owner: str = "HessianOperator",
        max_batch: int | None = None,
    ) -> HessianOperator:
        """The operator of ``problem``'s mean loss over the first ``max_samples`` samples of ``split``.

        The samples are the same for every product (see :func:`~deepscope.curvature._base.fixed_batches`:
        a shuffling DataLoader's subset is drawn once, a loader that drops its last batch is read
        whole and in order).
        """
        if max_samples is not None:
            check_int(max_samples, "max_samples", owner, minimum=1)
        if batch_size is not None:
            check_int(batch_size, "batch_size", owner, minimum=1)
        batches, total = fixed_batches(problem, split, max_samples, batch_size)
        return cls(
            problem.model,
            problem.criterion,
            problem.parameters(trainable_only=True),
            batches,
            buffers=problem.buffers(),
            parameter_names=parameter_names,
            kind=kind,
            method=method,
            owner=owner,
            n_samples=total,
            output_fn=problem.output_fn,
            max_batch=max_batch,
        )

    # --------------------------------------------------------------------------- evaluation
    def _loss(self, varied: Mapping[str, torch.Tensor], x: Inputs, y: torch.Tensor) -> torch.Tensor:
        return self.loss_fn(self._outputs(varied, x), y)

    def _outputs(self, varied: Mapping[str, torch.Tensor], x: Inputs) -> torch.Tensor:
        return functional_outputs(self.model, ({**self.base, **varied}, self.buffers), x, self.output_fn, self.owner)

    @property
    def fused_attention(self) -> bool:
        """True once a product ran ``scaled_dot_product_attention`` (on the math kernel)."""
        return self.second_order.seen

    def _check_loss(self, loss: torch.Tensor) -> None:
        if loss.ndim != 0:
            raise DeepscopeError(f"The loss must be a scalar (a mean over the batch). Got shape {tuple(loss.shape)}.")
        if not bool(torch.isfinite(loss.detach())):
            raise DataError(f"The loss is not finite ({float(loss.detach())}); curvature is undefined there.")

    def _gradient_graph(self, x: Inputs, y: torch.Tensor) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
        leaves = [self.base[n].detach().requires_grad_(True) for n in self.space.names]
        with torch.enable_grad(), self.second_order():
            loss = self._loss(dict(zip(self.space.names, leaves)), x, y)
            self._check_loss(loss)
            if not loss.requires_grad:
                raise DeepscopeError(f"The loss does not depend on the parameters {self.space.names[:4]}.")
            grads = torch.autograd.grad(loss, leaves, create_graph=True, allow_unused=True)
        if all(g is None for g in grads):
            raise DeepscopeError(f"The loss does not depend on the parameters {self.space.names[:4]}.")
        grads = [torch.zeros_like(p) if g is None else g for g, p in zip(grads, leaves)]
        return leaves, grads

    def _double_backward(self, leaves: list[torch.Tensor], grads: list[torch.Tensor], v: torch.Tensor) -> torch.Tensor:
        with torch.enable_grad():
            dot = sum((g * t).sum() for g, t in zip(grads, self.space.unflatten(v).values()))
            if not dot.requires_grad:  # the gradient is constant: the Hessian block is zero
                return torch.zeros_like(v)
            products = torch.autograd.grad(dot, leaves, retain_graph=True, allow_unused=True)
        return self.space.flatten([torch.zeros_like(p) if h is None else h for h, p in zip(products, leaves)])

    def _forward_over_reverse(self, x: Inputs, y: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        def gradient(varied: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
            return torch.func.grad(lambda p: self._loss(p, x, y))(varied)

        primal = {n: self.base[n] for n in self.space.names}
        if not self._checked:
            with torch.no_grad():
                self._check_loss(self._loss(primal, x, y))
            self._checked = True
        _, tangent = torch.func.jvp(gradient, (primal,), (self.space.unflatten(v),))
        return self.space.flatten(tangent)

    def _gauss_newton(self, x: Inputs, y: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        primal = {n: self.base[n] for n in self.space.names}

        def outputs(varied: dict[str, torch.Tensor]) -> torch.Tensor:
            return self._outputs(varied, x)

        output, output_tangent = torch.func.jvp(outputs, (primal,), (self.space.unflatten(v),))  # J v
        with torch.enable_grad():
            output = output.detach().requires_grad_(True)
            loss = self.loss_fn(output, y)
            self._check_loss(loss)
            (loss_gradient,) = torch.autograd.grad(loss, output, create_graph=True)
            dot = (loss_gradient * output_tangent.detach()).sum()
            curvature_tangent = (  # H_ℓ J v
                torch.autograd.grad(dot, output)[0] if dot.requires_grad else torch.zeros_like(output)
            )
        _, pullback = torch.func.vjp(outputs, primal)
        return self.space.flatten(pullback(curvature_tangent.detach().clone())[0])  # Jᵀ H_ℓ J v

    def _chunk_product(
        self, x: Inputs, y: torch.Tensor, vectors: torch.Tensor, out: torch.Tensor, weight: float, whole: bool
    ) -> None:
        """Adds ``weight ×`` the products with each column of ``vectors`` (n_params, m) on one chunk to ``out``."""
        if self.kind == "gauss_newton":
            products = (self._gauss_newton(x, y, v) for v in vectors.T)
        elif self.method == "forward_over_reverse":
            products = (self._forward_over_reverse(x, y, v) for v in vectors.T)
        else:
            if self._single_batch is not None and whole:  # the one batch in one chunk: its graph is kept
                if self._cached is None:
                    self._cached = [(1.0, *self._gradient_graph(x, y))]
                _, leaves, grads = self._cached[0]
            else:
                leaves, grads = self._gradient_graph(x, y)
            products = (self._double_backward(leaves, grads, v) for v in vectors.T)
        for column, product in zip(out.T, products):  # one product held at a time
            column.add_(product.detach(), alpha=weight)

    def _rows_per_chunk(self, x: Inputs, y: torch.Tensor) -> int:
        """Rows per chunk: ``max_batch``, else measured once from the gradient graphs of one and two rows."""
        if self._rows is not None:
            return self._rows
        coupled = any(isinstance(m, nn.modules.batchnorm._BatchNorm) and m.training for m in self.model.modules())
        if len(y) <= 1 or coupled:  # a train-mode BatchNorm's batch statistics couple the rows
            return max(len(y), 1)
        leaves = [self.base[n].detach().requires_grad_(True) for n in self.space.names]

        def loss(rows: int) -> torch.Tensor:
            return self._loss(dict(zip(self.space.names, leaves)), slice_rows(x, 0, rows), y[:rows])

        self._rows = measured_rows(loss, leaves, leaves + list(self.buffers.values()), cap=len(y))
        return self._rows

    def matmat(self, vectors: torch.Tensor) -> torch.Tensor:
        """``H @ vectors`` for ``vectors`` of shape (n_params, m); counts ``m`` products."""
        if vectors.ndim != 2 or vectors.shape[0] != self.n_params:
            raise invalid_parameter(
                "vectors", f"{self.owner}.matmat", f"a tensor of shape ({self.n_params}, m)", vectors
            )
        vectors = vectors.to(device=self.device, dtype=self.dtype)
        result = torch.zeros_like(vectors)
        batches = [self._single_batch] if self._single_batch is not None else self._batches()
        with self.second_order():
            for x, y in batches:
                rows = self._rows_per_chunk(x, y)
                for start in range(0, len(y), rows):
                    chunk = (x, y) if rows >= len(y) else (slice_rows(x, start, start + rows), y[start : start + rows])
                    self._chunk_product(*chunk, vectors, result, len(chunk[1]) / self.n_samples, rows >= len(y))
        self.n_products += vectors.shape[1]
        return result

    def matvec(self, vector: torch.Tensor) -> torch.Tensor:
        """``H @ vector`` for a flat vector of length ``n_params``; counts one product."""
        if not isinstance(vector, torch.Tensor) or vector.ndim != 1 or vector.shape[0] != self.n_params:
            raise invalid_parameter(
                "vector", f"{self.owner}.matvec", f"a flat tensor of length {self.n_params}", vector
            )
        return self.matmat(vector[:, None])[:, 0]

    __matmul__ = matvec

    def dense(self, chunk: int = 64) -> torch.Tensor:
        """The full (n_params, n_params) matrix, symmetrised, built ``chunk`` columns at a time."""
        eye = torch.eye(self.n_params, dtype=self.dtype, device=self.device)
        columns = [self.matmat(eye[:, start : start + chunk]) for start in range(0, self.n_params, chunk)]
        matrix = torch.cat(columns, dim=1)
        return (matrix + matrix.T) / 2

    def __repr__(self) -> str:
        return f"HessianOperator(kind={self.kind!r}, n_params={self.n_params}, n_samples={self.n_samples}, method={self.method!r})"


def _operator(problem: Problem, owner: str, **options: Any) -> HessianOperator:
    return HessianOperator.from_problem(problem, owner=owner, **options)


@analysis(takes="problem", family="curvature", example_kwargs={"max_samples": 8})
def hessian_vector_product(
    problem: Problem,
    vector: torch.Tensor | None = None,
    *,
    max_samples: int | None = None,
    parameter_names: Sequence[str] | None = None,
    method: str = "auto",
    split: str = "train",
) -> torch.Tensor:
    """``H v`` for the Hessian of the problem's mean loss over its first ``max_samples`` samples.

    ``Hv = ∇(∇L·v)`` (Pearlmutter, 1994), by double backward or forward-over-reverse.

    Args:
        problem: a :class:`deepscope.Problem`.
        vector: flat vector (n_params,) in the order of ``problem.parameters()`` (restricted to
            ``parameter_names`` when given); default: all ones.
        max_samples: number of training samples in the mean (default all).
        parameter_names: restrict to these parameters.
        method: "auto", "double_backward" or "forward_over_reverse".

    Returns:
        The product, a flat tensor (n_params,).

    Example:
        >>> hv = hessian_vector_product(problem, torch.ones(n_params))  # doctest: +SKIP
    """
    options = {"max_samples": max_samples, "parameter_names": parameter_names, "split": split}
    operator = _operator(problem, "hessian_vector_product", method=method, **options)
    vector = torch.ones(operator.n_params, dtype=operator.dtype, device=operator.device) if vector is None else vector
    return operator.matvec(vector)


@analysis(takes="problem", family="curvature", example_kwargs={"max_samples": 8})
def gauss_newton_vector_product(
    problem: Problem,
    vector: torch.Tensor | None = None,
    *,
    max_samples: int | None = None,
    parameter_names: Sequence[str] | None = None,
    split: str = "train",
) -> torch.Tensor:
    """``G v`` for the generalised Gauss-Newton matrix ``G = Jᵀ H_ℓ J`` (Schraudolph, 2002).

    Args and returns as :func:`hessian_vector_product`.

    Example:
        >>> gv = gauss_newton_vector_product(problem, torch.ones(n_params))  # doctest: +SKIP
    """
    options = {"max_samples": max_samples, "parameter_names": parameter_names, "split": split}
    operator = _operator(problem, "gauss_newton_vector_product", kind="gauss_newton", **options)
    vector = torch.ones(operator.n_params, dtype=operator.dtype, device=operator.device) if vector is None else vector
    return operator.matvec(vector)


@analysis(takes="problem", family="curvature", example_kwargs={"max_samples": 8})
def dense_hessian(
    problem: Problem,
    *,
    max_samples: int | None = None,
    parameter_names: Sequence[str] | None = None,
    kind: str = "hessian",
    max_params: int = 5000,
    split: str = "train",
) -> torch.Tensor:
    """The exact (n_params, n_params) Hessian (or Gauss-Newton matrix) of the mean loss, for small models.

    Built column by column from ``n_params`` products (the gradient graph of each batch is
    computed once and reused for every column).

    Args:
        problem: a :class:`deepscope.Problem`.
        max_samples: number of training samples in the mean (default all).
        parameter_names: restrict to these parameters (a diagonal block of the Hessian).
        kind: "hessian" or "gauss_newton".
        max_params: refuse larger problems (the matrix needs n_params² numbers).

    Returns:
        A symmetric tensor (n_params, n_params) in the order of ``problem.parameters()``.

    Example:
        >>> H = dense_hessian(problem)  # doctest: +SKIP
        >>> torch.linalg.eigvalsh(H)    # doctest: +SKIP
    """
    check_int(max_params, "max_params", "dense_hessian", minimum=1)
    operator = _operator(
        problem, "dense_hessian", max_samples=max_samples, parameter_names=parameter_names, kind=kind, split=split
    )
    if operator.n_params > max_params:
        raise invalid_parameter(
            "max_params", "dense_hessian", f"at least the number of parameters ({operator.n_params})", max_params
        )
    # large chunks: each batch's gradient graph is built once per chunk of columns
    return operator.dense(chunk=min(operator.n_params, 512))
