"""Slow: the certificate is never below the certified predictor's error on 10,000 fresh samples (20 seeds)."""

import pytest
import torch

from deepscope import Problem
from deepscope.datasets import load
from deepscope.generalization.bounds.pac_bayes import pac_bayes_certificate
from deepscope.models import build, train


@pytest.mark.slow
def test_certificate_is_valid_over_20_seeds():
    fresh = load("mnist1d", n_samples=10_000, seed=999, test_fraction=0.5)
    fresh_x = torch.cat([torch.as_tensor(fresh.x_train), torch.as_tensor(fresh.x_test)])
    fresh_y = torch.cat([torch.as_tensor(fresh.y_train), torch.as_tensor(fresh.y_test)])
    for seed in range(20):
        data = load("mnist1d", n_samples=2000, seed=seed)
        torch.manual_seed(seed)
        run = train(build("mlp", data.input_shape, data.num_classes, widths=(64,)), data, epochs=10, lr=3e-3, seed=seed)
        problem = Problem.from_dataset(run.model, data, init_state=run.init_state)
        certificate = pac_bayes_certificate(
            problem, prior="data", iterations=100, prior_iterations=200, mc_samples=2, seed=seed
        )
        measured = certificate.stochastic_error((fresh_x, fresh_y), samples=20, seed=seed)
        # 20 weight samples x 10,000 examples: the measured error's s.e. is about 0.003
        assert certificate.certificate >= measured.error, (seed, certificate.certificate, measured.error)
