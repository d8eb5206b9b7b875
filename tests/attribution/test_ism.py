import pytest
import torch

from deepscope.attribution import ism
from deepscope.errors import DataError


def one_hot(letters):
    return torch.nn.functional.one_hot(letters, 4).permute(0, 2, 1).double()


def test_linear_model_effects_are_weight_differences():
    # F(x) = Σ_l w[a_l, l]: mutating l to a changes F by w[a, l] − w[x_l, l]
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(4 * 6, 2)).double()
    letters = torch.randint(0, 4, (3, 6))
    x = one_hot(letters)
    result = ism(model, x, target=1, max_batch=7)
    weight = model[1].weight[1].detach().view(4, 6)
    observed = weight[letters, torch.arange(6)]  # (3, 6): w[x_l, l]
    expected = (weight.unsqueeze(0) - observed.unsqueeze(1)) * (1 - x)
    torch.testing.assert_close(result.values, expected)


def test_brute_force_on_a_cnn():
    torch.manual_seed(1)
    model = torch.nn.Sequential(
        torch.nn.Conv1d(4, 3, 3, padding=1), torch.nn.ReLU(), torch.nn.Flatten(), torch.nn.Linear(15, 2)
    ).double()
    x = one_hot(torch.randint(0, 4, (1, 5)))
    result = ism(model, x, target=[[0], [1]])
    base = model(x)[0]
    for position in range(5):
        for letter in range(4):
            mutated = x.clone()
            mutated[0, :, position] = 0
            mutated[0, letter, position] = 1
            change = (model(mutated)[0] - base).detach()
            torch.testing.assert_close(result.values[:, 0, letter, position], change)


def test_non_one_hot_inputs_are_refused():
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(8, 2))
    with pytest.raises(DataError, match="one-hot"):
        ism(model, torch.rand(2, 4, 2))
