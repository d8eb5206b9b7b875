import pytest
import torch

from deepscope.curvature._base import ParameterSpace, batches_of


def test_flatten_and_unflatten_are_inverse_and_slices_locate_parameters():
    params = {"a.weight": torch.randn(3, 2), "a.bias": torch.randn(3), "b": torch.randn(2, 2, 2)}
    space = ParameterSpace(params)
    vector = space.flatten(params)
    assert space.numel == 6 + 3 + 8 == vector.numel()
    for name, value in space.unflatten(vector).items():
        assert torch.equal(value, params[name])
    assert torch.equal(vector[space.slice_of("a.bias")], params["a.bias"])


def test_batches_of_covers_every_sample_once():
    x, y = torch.arange(10.0)[:, None], torch.arange(10)
    batches = list(batches_of(x, y, batch_size=4)())
    assert [len(b[0]) for b in batches] == [4, 4, 2]
    assert torch.equal(torch.cat([b[1] for b in batches]), y)


def test_batches_of_slices_every_tensor_of_a_dict():
    inputs = {"input_ids": torch.arange(14).reshape(7, 2), "attention_mask": torch.ones(7, 2)}
    targets = torch.arange(7)
    batches = list(batches_of(inputs, targets, 3)())
    assert [len(y) for _, y in batches] == [3, 3, 1]
    assert torch.equal(torch.cat([x["input_ids"] for x, _ in batches]), inputs["input_ids"])
    assert all(x["input_ids"].dtype == torch.int64 for x, _ in batches)


def test_result_note_joins_the_guard_note_and_the_attention_note():
    from deepscope._attention import NOTE
    from deepscope.curvature._base import result_note
    from deepscope.guard import model_guard

    model = torch.nn.Sequential(torch.nn.Linear(2, 2), torch.nn.Dropout(0.5))
    assert result_note(model) == ""
    assert result_note(model, fused_attention=True) == NOTE[0].upper() + NOTE[1:] + "."
    with model_guard(model):
        both = result_note(model, fused_attention=True)
    assert both.startswith("The model was in train mode") and both.endswith(NOTE[1:] + ".")


def test_second_order_watches_once_and_keeps_the_math_kernel_only_for_attention():
    from deepscope.curvature._base import SecondOrder

    q = torch.randn(1, 1, 3, 4)
    for calls_attention in (False, True):
        second_order = SecondOrder()
        for block in range(3):
            with second_order():
                # the first block always selects the math kernel; later ones only after attention ran
                assert torch.backends.cuda.flash_sdp_enabled() == (block > 0 and not calls_attention)
                if calls_attention:
                    torch.nn.functional.scaled_dot_product_attention(q, q, q)
            assert second_order.seen == calls_attention
        assert torch.backends.cuda.flash_sdp_enabled()  # restored after every block


def test_functional_outputs_calls_with_keywords_for_a_dict_and_applies_output_fn():
    from deepscope.curvature._base import functional_outputs

    class Named(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.linear = torch.nn.Linear(2, 1)

        def forward(self, features, scale):
            return {"logits": self.linear(features) * scale}

    model = Named()
    zero = {"linear.weight": torch.zeros(1, 2), "linear.bias": torch.ones(1)}
    x = {"features": torch.randn(3, 2), "scale": torch.full((3, 1), 2.0)}
    out = functional_outputs(model, (zero, {}), x, lambda o: o["logits"], "test")
    assert torch.equal(out, torch.full((3, 1), 2.0))


def test_check_names_refuses_empty_unknown_and_integer_parameters():
    from deepscope.curvature._base import check_names
    from deepscope.errors import InvalidParameterError, UnsupportedModelError

    base = {"w": torch.zeros(3), "steps": torch.zeros(2, dtype=torch.long)}
    check_names(base, ["w"], "owner")  # a float parameter that exists: accepted
    with pytest.raises(UnsupportedModelError, match="owner found no trainable parameters"):
        check_names({}, [], "owner")
    with pytest.raises(InvalidParameterError, match="'parameter_names' parameter of owner"):
        check_names(base, ["v"], "owner")
    with pytest.raises(InvalidParameterError, match="non-empty list"):
        check_names(base, [], "owner")
    with pytest.raises(UnsupportedModelError, match=r"floating-point parameters; \['steps'\] are torch.int64"):
        check_names(base, ["w", "steps"], "owner")
