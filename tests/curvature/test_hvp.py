import copy

import pytest
import torch
from torch import nn

from deepscope import Problem
from deepscope.curvature.hvp import (
    HessianOperator,
    ParameterSpace,
    dense_hessian,
    gauss_newton_vector_product,
    hessian_vector_product,
)
from deepscope.errors import DataError, DeepscopeError, InvalidParameterError, UnsupportedModelError

from .conftest import least_squares, tiny_classifier


def autograd_hessian(problem: Problem) -> torch.Tensor:
    """Reference: torch.autograd.functional.hessian of the full-data mean loss."""
    params = problem.parameters()
    space = ParameterSpace(params)
    x, y = problem.tensors()
    return torch.autograd.functional.hessian(lambda v: problem.loss(space.unflatten(v), x, y), space.flatten(params))


@pytest.mark.parametrize("batch_size", [7, 256])
def test_dense_hessian_of_least_squares_is_two_xtx_over_n(batch_size):
    problem, exact = least_squares(batch_size=batch_size)
    # float64 throughout: only rounding separates the two (1e-12 is ~1e4 ulp of entries of size ~10)
    torch.testing.assert_close(dense_hessian(problem), exact, atol=1e-12, rtol=1e-12)


@pytest.mark.parametrize("method", ["double_backward", "forward_over_reverse"])
@pytest.mark.parametrize("batch_size", [10, 256])
def test_hvp_matches_autograd_hessian_on_tiny_net(method, batch_size):
    problem = tiny_classifier(batch_size=batch_size)
    reference = autograd_hessian(problem)
    vector = torch.randn(reference.shape[0], dtype=torch.float64)
    product = hessian_vector_product(problem, vector, method=method)
    # batch contributions weighted by size (48 = 10+10+10+10+8) must reproduce the full mean exactly
    torch.testing.assert_close(product, reference @ vector, atol=1e-12, rtol=1e-10)


def test_operator_counts_products_and_keeps_graph_for_one_batch():
    problem = tiny_classifier()
    operator = HessianOperator.from_problem(problem)
    vector = torch.randn(operator.n_params, dtype=torch.float64)
    first = operator.matvec(vector)
    second = operator.matvec(vector)
    assert operator.n_products == 2 and operator._cached is not None
    torch.testing.assert_close(first, second, atol=0, rtol=0)


def test_max_samples_restricts_the_mean():
    problem = tiny_classifier(batch_size=10)
    full = dense_hessian(problem, max_samples=25)
    x, y = problem.tensors(max_samples=25)
    sub = Problem(problem.model, (x, y))
    torch.testing.assert_close(full, dense_hessian(sub), atol=1e-12, rtol=1e-10)


def test_parameter_block_is_the_diagonal_block():
    problem = tiny_classifier()
    full = dense_hessian(problem)
    space = ParameterSpace(problem.parameters())
    block = dense_hessian(problem, parameter_names=["2.weight"])
    where = space.slice_of("2.weight")
    torch.testing.assert_close(block, full[where, where], atol=1e-12, rtol=1e-10)


def test_gauss_newton_equals_hessian_for_linear_least_squares_and_is_psd_otherwise():
    problem, exact = least_squares()
    torch.testing.assert_close(dense_hessian(problem, kind="gauss_newton"), exact, atol=1e-12, rtol=1e-12)
    classifier = tiny_classifier()
    gauss_newton = dense_hessian(classifier, kind="gauss_newton")
    # explicit oracle: G = Σ_i Jᵢᵀ H_ℓ,ᵢ Jᵢ / n with H_ℓ = diag(p) − ppᵀ for softmax cross-entropy
    params = classifier.parameters()
    space = ParameterSpace(params)
    x, y = classifier.tensors()
    jacobian = torch.autograd.functional.jacobian(
        lambda v: classifier.forward(space.unflatten(v), x), space.flatten(params)
    )
    probabilities = classifier.forward(params, x).softmax(-1)
    reference = sum(
        jacobian[i].T @ (torch.diag(p) - torch.outer(p, p)) @ jacobian[i] for i, p in enumerate(probabilities)
    ) / len(x)
    torch.testing.assert_close(gauss_newton, reference, atol=1e-12, rtol=1e-10)
    vector = torch.randn(space.numel, dtype=torch.float64)
    torch.testing.assert_close(
        gauss_newton_vector_product(classifier, vector), reference @ vector, atol=1e-12, rtol=1e-10
    )


def test_all_frozen_parameters_are_refused():
    problem = tiny_classifier()
    model = copy.deepcopy(problem.model).requires_grad_(False)
    x, y = problem.tensors()
    with pytest.raises(UnsupportedModelError, match="no trainable parameters"):
        dense_hessian(Problem(model, (x, y)))


def test_loss_independent_of_parameters_is_refused():
    x, y = torch.randn(8, 3), torch.randint(0, 2, (8,))
    problem = Problem(nn.Linear(3, 2), (x, y), loss=lambda output, target: target.float().mean())
    with pytest.raises(DeepscopeError, match="does not depend"):
        hessian_vector_product(problem)


def test_non_finite_loss_is_refused():
    x, y = torch.randn(8, 3), torch.randint(0, 2, (8,))
    model = nn.Linear(3, 2)  # finite weights (Problem refuses NaN/Inf weights itself); the loss overflows
    problem = Problem(model, (x, y), loss=lambda output, target: (output.mean() + 1e3).exp())
    with pytest.raises(DataError, match="not finite"):
        hessian_vector_product(problem)


def test_integer_valued_model_is_refused():
    class IntegerModel(nn.Module):
        def __init__(self):
            super().__init__()
            self.table = nn.Parameter(torch.arange(6).reshape(3, 2), requires_grad=False)

        def forward(self, x):
            return x.float() @ self.table.float()

    x, y = torch.randn(8, 3), torch.randint(0, 2, (8,))
    problem = Problem(IntegerModel(), (x, y))
    with pytest.raises(UnsupportedModelError):
        dense_hessian(problem)


def test_bad_vector_and_names_raise_the_standard_message():
    problem = tiny_classifier()
    with pytest.raises(InvalidParameterError, match="'vector' parameter"):
        hessian_vector_product(problem, torch.ones(3, dtype=torch.float64))
    with pytest.raises(InvalidParameterError, match="'parameter_names' parameter"):
        dense_hessian(problem, parameter_names=["nope"])
    with pytest.raises(InvalidParameterError, match="'max_params' parameter"):
        dense_hessian(problem, max_params=3)


def test_a_dataloader_is_streamed_batch_by_batch():
    problem = tiny_classifier()
    x, y = problem.tensors()
    reads = {"n": 0}

    class CountingDataset(torch.utils.data.Dataset):
        def __len__(self):
            return len(x)

        def __getitem__(self, index):
            reads["n"] += 1
            return x[index], y[index]

    loader = torch.utils.data.DataLoader(CountingDataset(), batch_size=7)
    streamed = Problem(problem.model, loader)
    reads["n"] = 0
    operator = HessianOperator.from_problem(streamed, max_samples=30)
    assert operator.n_samples == 30 and reads["n"] <= 14 + 7  # set-up reads two batches, not the data set
    vector = torch.randn(operator.n_params, dtype=torch.float64)
    expected = HessianOperator.from_problem(problem, max_samples=30).matvec(vector)
    torch.testing.assert_close(operator.matvec(vector), expected, atol=1e-12, rtol=1e-10)


class _LoggedDataset(torch.utils.data.Dataset):
    """A dataset that records every index it serves (to see which samples a loader drew)."""

    def __init__(self, x: torch.Tensor, y: torch.Tensor) -> None:
        self.x, self.y = x, y
        self.served: list[int] = []

    def __len__(self) -> int:
        return len(self.x)

    def __getitem__(self, index: int):
        self.served.append(int(index))
        return self.x[index], self.y[index]


@pytest.mark.parametrize("estimator", ["eigenvalues", "trace", "density"])
def test_a_shuffling_loader_with_max_samples_uses_one_fixed_subset(estimator):
    from deepscope.curvature.density import hessian_density
    from deepscope.curvature.lanczos import hessian_eigenvalues
    from deepscope.curvature.trace import hessian_trace

    tensors = tiny_classifier(n=64)
    x, y = tensors.tensors()
    dataset = _LoggedDataset(x, y)
    loader = torch.utils.data.DataLoader(
        dataset, batch_size=8, shuffle=True, generator=torch.Generator().manual_seed(3)
    )
    shuffled = Problem(tensors.model, loader)
    run = {
        "eigenvalues": lambda p: hessian_eigenvalues(p, k=3, which="both", tol=1e-8, max_samples=16).eigenvalues,
        "trace": lambda p: [hessian_trace(p, rel_tol=1e-3, max_hvps=60, max_samples=16).trace],
        "density": lambda p: [hessian_density(p, n_vectors=2, n_steps=10, max_samples=16).mean_eigenvalue],
    }[estimator]
    dataset.served.clear()
    from_loader = run(shuffled)
    # the loader was read once for the 16 samples (two batches of 8, plus at most one batch read
    # ahead and dropped by Problem.batches), not once per product
    assert len(dataset.served) <= 24
    subset = torch.tensor(dataset.served[:16])
    fixed = Problem(tensors.model, (x[subset], y[subset]))
    # same samples, same order, same float64 arithmetic: equal up to summation-order rounding
    torch.testing.assert_close(torch.tensor(from_loader), torch.tensor(run(fixed)), rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("shuffle", [False, True])
def test_a_loader_that_drops_its_last_batch_still_gives_the_mean_over_every_sample(shuffle):
    problem, exact = least_squares(n=40)
    x, y = problem.tensors()
    loader = torch.utils.data.DataLoader(
        torch.utils.data.TensorDataset(x, y), batch_size=16, shuffle=shuffle, drop_last=True
    )
    # drop_last skipped 8 of the 40 samples (another 8 on every pass when shuffling) while the mean
    # divided by 40: 28% (or a random) error. Now the data set is read whole: float64 rounding only
    torch.testing.assert_close(dense_hessian(Problem(problem.model, loader, loss="mse")), exact, rtol=1e-12, atol=1e-12)


# ----------------------------------------------------------------------------- chunks of rows
# A mean loss over N rows is Σ_c (n_c/N) L_c over chunks c, so Σ_c (n_c/N) H_c v = H v: the chunked
# product equals the whole batch's up to the order of the float sums.


@pytest.mark.parametrize("kind,method", [("hessian", "double_backward"), ("hessian", "forward_over_reverse"),
                                         ("gauss_newton", "auto")])  # fmt: skip
@pytest.mark.parametrize("max_batch", [1, 5, 48])
def test_chunked_products_equal_the_whole_batch_product(kind, method, max_batch):
    problem = tiny_classifier()  # one batch of 48 rows, float64
    x, y = problem.tensors()
    options = {"kind": kind, "method": method}
    whole = HessianOperator.from_problem(problem, **options)
    chunked = HessianOperator(problem.model, problem.criterion, problem.parameters(), lambda: [(x, y)],
                              max_batch=max_batch, **options)  # fmt: skip
    vectors = torch.randn(whole.n_params, 3, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    # float64: the chunk sums reorder ~50 terms of size ~1, so 1e-12 relative is ~1e4 ulp of slack
    torch.testing.assert_close(chunked.matmat(vectors), whole.matmat(vectors), atol=1e-12, rtol=1e-12)
    if kind == "hessian":  # and both equal the reference Hessian
        torch.testing.assert_close(chunked.matmat(vectors), autograd_hessian(problem) @ vectors, atol=1e-12, rtol=1e-10)
    assert (chunked._cached is None) == (max_batch < 48 or method != "double_backward")


def test_chunked_products_in_float32_agree_to_float32_summation():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(5, 16), nn.Tanh(), nn.Linear(16, 3))
    x, y = torch.randn(64, 5), torch.randint(0, 3, (64,))
    problem = Problem(model, (x, y))
    whole = HessianOperator.from_problem(problem, max_batch=64)
    chunked = HessianOperator.from_problem(problem, max_batch=7)
    vector = torch.randn(whole.n_params)
    expected = whole.matvec(vector)
    # float32 (eps 1.2e-7): each entry sums 64 row terms in another grouping (10 chunks of 7 and one of 1);
    # the summation-order error is below ~64 eps relative to the terms' magnitudes, so 1e-5 of the
    # largest entry bounds it
    scale = float(expected.abs().max())
    torch.testing.assert_close(chunked.matvec(vector), expected, atol=1e-5 * scale, rtol=1e-5)


def test_rows_per_chunk_follow_the_graph_budget(monkeypatch):
    from deepscope.curvature import _memory

    problem = tiny_classifier()
    whole = HessianOperator.from_problem(problem)
    vector = torch.randn(whole.n_params, dtype=torch.float64)
    expected = whole.matvec(vector)
    assert whole._rows == 48 and whole._cached is not None  # the default budget holds this graph
    monkeypatch.setattr(_memory, "GRAPH_BYTES", 8_000)  # a few rows' graphs of this 5-7-3 network
    small = HessianOperator.from_problem(problem)
    torch.testing.assert_close(small.matvec(vector), expected, atol=1e-12, rtol=1e-12)
    assert 1 <= small._rows < 48 and small._cached is None
    assert small.matvec(vector).shape == vector.shape and small.n_products == 2


def test_one_sample_operator_keeps_its_graph():
    problem = tiny_classifier()
    operator = HessianOperator.from_problem(problem, max_samples=1)
    vector = torch.randn(operator.n_params, dtype=torch.float64)
    x, y = problem.tensors(max_samples=1)
    one = Problem(problem.model, (x, y))
    torch.testing.assert_close(operator.matvec(vector), autograd_hessian(one) @ vector, atol=1e-12, rtol=1e-10)
    assert operator._cached is not None


def test_chunks_of_token_dict_inputs_equal_the_whole_batch():
    hf_models = pytest.importorskip("hf_models")
    model = hf_models.tiny_bert(dtype=torch.float64, hidden=16, layers=1, init_range=0.3)
    problem = Problem(model, hf_models.token_batch(6, seq_len=6, seed=1), output_fn=lambda out: out.logits)
    whole = HessianOperator.from_problem(problem, max_batch=6)
    chunked = HessianOperator.from_problem(problem, max_batch=4)  # chunks of 4 and 2 sequences
    vector = torch.randn(whole.n_params, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    # float64 through attention (math kernel): 1e-10 relative is far above the reordering error
    torch.testing.assert_close(chunked.matvec(vector), whole.matvec(vector), atol=1e-10, rtol=1e-10)


def test_max_batch_is_validated():
    with pytest.raises(InvalidParameterError, match="max_batch"):
        HessianOperator.from_problem(tiny_classifier(), max_batch=0)


def test_a_train_mode_batchnorm_batch_is_not_split(monkeypatch):
    from deepscope.curvature import _memory

    monkeypatch.setattr(_memory, "GRAPH_BYTES", 1)  # would split any batch into single rows
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 6), nn.BatchNorm1d(6), nn.Tanh(), nn.Linear(6, 2)).double().train()
    x, y = torch.randn(20, 4, dtype=torch.float64), torch.randint(0, 2, (20,))
    problem = Problem(model, (x, y))
    operator = HessianOperator.from_problem(problem)  # used directly: no guard, batch statistics
    vector = torch.randn(operator.n_params, dtype=torch.float64)
    # the loss with batch statistics couples the rows, so the oracle is the whole batch's Hessian
    torch.testing.assert_close(operator.matvec(vector), autograd_hessian(problem) @ vector, atol=1e-10, rtol=1e-8)
