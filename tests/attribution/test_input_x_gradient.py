import torch
from captum.attr import InputXGradient

from deepscope.attribution import input_x_gradient


def test_matches_captum(cnn_and_images):
    model, images = cnn_and_images
    ours = input_x_gradient(model, images, target=2)
    reference = InputXGradient(model).attribute(images, target=2)
    # identical computation in float64; only summation order differs
    torch.testing.assert_close(ours.values, reference, rtol=1e-10, atol=1e-12)


def test_bias_free_relu_net_is_complete(make_relu_mlp):
    # a bias-free ReLU net is positively homogeneous: F(x) = x·∇F(x) (Euler), and F(0) = 0
    model = make_relu_mlp(bias=False)
    rows = torch.randn(5, 5, dtype=torch.float64)
    result = input_x_gradient(model, rows, target=1)
    assert result.diagnostics["completeness_error"].max() < 1e-10


def test_linear_model_with_baseline_is_exact():
    model = torch.nn.Linear(4, 2).double()
    rows, reference = torch.randn(3, 4, dtype=torch.float64), torch.randn(4, dtype=torch.float64)
    result = input_x_gradient(model, rows, target=0, baseline=reference)
    torch.testing.assert_close(result.values, model.weight[0].detach() * (rows - reference))
    assert result.diagnostics["completeness_error"].max() < 1e-10
