"""Problem on HuggingFace models (tiny configs, default sdpa attention): dict/token inputs, output_fn,
tied parameters, and the bad inputs of issue 12 each refused with a clear error.

Oracle for the numbers: the model called directly (``model(**inputs).logits``) and
``torch.nn.functional.cross_entropy`` on the same examples; batching only changes the order of a
float32 mean over 12 examples, so relative 1e-6 covers the round-off.
"""

import hf_models
import pytest
import torch
from torch.utils.data import DataLoader

from deepscope import Problem
from deepscope.errors import DataError, InvalidParameterError, UnsupportedModelError
from deepscope.problem import input_embedding


def _logits(out):
    return out.logits


def _direct(model, inputs, labels):
    with torch.no_grad():
        logits = model(**inputs).logits
    return float(torch.nn.functional.cross_entropy(logits, labels)), float((logits.argmax(-1) == labels).float().mean())


@pytest.mark.parametrize("builder", [hf_models.tiny_bert, hf_models.tiny_gpt2])
def test_token_dict_inputs_through_problem_equal_the_direct_call(builder):
    model = builder()
    inputs, labels = hf_models.token_batch(12, seq_len=8, seed=3)
    loss, accuracy = _direct(model, inputs, labels)
    problem = Problem(model, (inputs, labels), output_fn=_logits, batch_size=5)
    evaluation = problem.evaluate()
    assert evaluation.n == 12 and problem.output_shape == (3,) and problem.num_classes == 3
    assert evaluation.loss == pytest.approx(loss, rel=1e-6)
    assert evaluation.accuracy == pytest.approx(accuracy)
    x, y = problem.tensors()
    assert (
        isinstance(x, dict) and x["input_ids"].dtype == torch.int64 and torch.equal(x["input_ids"], inputs["input_ids"])
    )
    # the functional view gives the model's logits for the model's own parameters
    with torch.no_grad():
        torch.testing.assert_close(problem.forward(problem.parameters(), x), model(**inputs).logits)
        assert float(problem.loss(problem.parameters(), x, y)) == pytest.approx(loss, rel=1e-6)


def test_a_loader_of_dict_pairs_and_of_labelled_dicts_give_the_same_evaluation():
    model = hf_models.tiny_bert()
    inputs, labels = hf_models.token_batch(12, seq_len=8, seed=4)
    loss, _ = _direct(model, inputs, labels)
    pairs = [({name: value[i] for name, value in inputs.items()}, labels[i]) for i in range(12)]
    labelled = [{**pair[0], "labels": pair[1]} for pair in pairs]
    for data in (DataLoader(pairs, batch_size=5), DataLoader(labelled, batch_size=5)):
        assert Problem(model, data, output_fn=_logits).evaluate().loss == pytest.approx(loss, rel=1e-6)


def test_vit_pixel_values_through_problem():
    model = hf_models.tiny_vit()
    images, labels = hf_models.image_batch(6)
    problem = Problem(model, ({"pixel_values": images}, labels), output_fn=_logits)
    loss, _ = _direct(model, {"pixel_values": images}, labels)
    assert problem.evaluate().loss == pytest.approx(loss, rel=1e-6)


def test_integer_ids_as_a_plain_tensor_are_never_cast():
    model = torch.nn.Sequential(torch.nn.Embedding(10, 4), torch.nn.Flatten(), torch.nn.Linear(12, 2))
    ids = torch.randint(0, 10, (8, 3))
    problem = Problem(model, (ids, torch.arange(8) % 2))
    x, _ = problem.tensors()
    assert x.dtype == torch.int64 and torch.equal(x, ids)
    assert problem.evaluate().n == 8


def test_tied_parameters_are_named_once_and_substituted_everywhere():
    model = hf_models.tiny_gpt2_lm()
    inputs, _ = hf_models.token_batch(4, seq_len=8, seed=5)
    labels = torch.tensor([3, 7, 11, 40])
    problem = Problem(model, (inputs, labels), output_fn=lambda out: out.logits[:, -1])
    names = list(problem.parameters())
    assert "transformer.wte.weight" in names and "lm_head.weight" not in names
    assert len(names) == len({id(p) for p in model.parameters()})
    # zeroing the one tied tensor zeroes the output layer too: the logits are exactly 0
    params = {**problem.parameters(), "transformer.wte.weight": torch.zeros_like(model.transformer.wte.weight)}
    with torch.no_grad():
        assert torch.equal(problem.forward(params, inputs), torch.zeros(4, hf_models.VOCAB))
    # evaluate accepts a full state_dict, whose tied names both appear
    assert problem.evaluate(params=model.state_dict()).loss == pytest.approx(problem.evaluate().loss, rel=1e-6)


def test_input_embedding_is_found_on_hf_and_plain_models():
    name, embedding = input_embedding(hf_models.tiny_bert())
    assert name == "bert.embeddings.word_embeddings" and embedding.num_embeddings == hf_models.VOCAB
    single = torch.nn.Sequential(torch.nn.Embedding(7, 2))
    assert input_embedding(single) == ("0", single[0])
    two = torch.nn.ModuleDict({"a": torch.nn.Embedding(7, 2), "b": torch.nn.Embedding(3, 2)})
    assert input_embedding(two) is None  # ambiguous: no check rather than a wrong one


# --------------------------------------------------------------------------- bad input
def test_a_model_output_without_output_fn_is_refused_with_what_to_pass():
    inputs, labels = hf_models.token_batch(4)
    with pytest.raises(DataError, match="SequenceClassifierOutput.*output_fn=lambda out: out.logits"):
        Problem(hf_models.tiny_bert(), (inputs, labels))


def test_an_output_fn_that_does_not_give_batch_by_classes_is_refused():
    inputs, labels = hf_models.token_batch(4)
    with pytest.raises(InvalidParameterError, match="output_fn.*\\(batch, classes\\).*gave shape \\(4, 8, 100\\)"):
        Problem(hf_models.tiny_gpt2_lm(), (inputs, labels), output_fn=_logits)
    with pytest.raises(InvalidParameterError, match="one row per example|\\(batch, classes\\)"):
        Problem(hf_models.tiny_bert(), (inputs, labels), output_fn=lambda out: out.logits[0])
    with pytest.raises(InvalidParameterError, match="output_fn"):
        Problem(hf_models.tiny_bert(), (inputs, labels), output_fn="logits")


def test_token_ids_out_of_the_embedding_range_are_refused_before_the_model_runs():
    inputs, labels = hf_models.token_batch(4)
    too_high = {**inputs, "input_ids": inputs["input_ids"].clone()}
    too_high["input_ids"][2, 1] = hf_models.VOCAB + 5
    with pytest.raises(DataError, match="ids must lie in \\[0, 99\\].*word_embeddings.*\\[0, 105\\].*1 id"):
        Problem(hf_models.tiny_bert(), (too_high, labels), output_fn=_logits)
    negative = {**inputs, "input_ids": inputs["input_ids"] - 1}
    with pytest.raises(DataError, match="ids must lie in"):
        Problem(hf_models.tiny_bert(), (negative, labels), output_fn=_logits)


def test_token_ids_out_of_range_in_a_late_loader_batch_are_named():
    inputs, labels = hf_models.token_batch(12)
    inputs["input_ids"][10, 0] = 500
    pairs = [({name: value[i] for name, value in inputs.items()}, labels[i]) for i in range(12)]
    problem = Problem(hf_models.tiny_bert(), DataLoader(pairs, batch_size=5), output_fn=_logits)
    with pytest.raises(DataError, match="ids must lie in.*batch 2 of the train data"):
        problem.evaluate()


def test_an_attention_mask_of_another_shape_is_refused():
    inputs, labels = hf_models.token_batch(4)
    bad = {**inputs, "attention_mask": inputs["attention_mask"][:, :6]}
    with pytest.raises(DataError, match="attention_mask of shape \\(4, 6\\) and input_ids of shape \\(4, 8\\)"):
        Problem(hf_models.tiny_bert(), (bad, labels), output_fn=_logits)


def test_dict_inputs_of_mismatched_batch_lengths_are_refused():
    inputs, labels = hf_models.token_batch(4)
    bad = {**inputs, "attention_mask": inputs["attention_mask"][:3]}
    with pytest.raises(DataError, match="same batch length"):
        Problem(hf_models.tiny_bert(), (bad, labels), output_fn=_logits)


def test_a_model_that_cannot_take_the_dict_names_each_input():
    inputs, labels = hf_models.token_batch(4)
    with pytest.raises(DataError, match="cannot take the training inputs \\{'input_ids': int64 \\(8,\\)"):
        Problem(torch.nn.Linear(8, 3), (inputs, labels))


def test_different_values_for_the_two_names_of_a_tied_parameter_are_refused():
    model = hf_models.tiny_gpt2_lm()
    inputs, _ = hf_models.token_batch(4, seq_len=8, seed=5)
    problem = Problem(model, (inputs, torch.tensor([3, 7, 11, 40])), output_fn=lambda out: out.logits[:, -1])
    state = {**model.state_dict(), "lm_head.weight": torch.zeros_like(model.lm_head.weight)}
    with pytest.raises(InvalidParameterError, match="lm_head.weight.*transformer.wte.weight.*tied"):
        problem.evaluate(params=state)


def test_an_output_fn_that_cannot_read_the_output_names_it():
    inputs, labels = hf_models.token_batch(4)
    with pytest.raises(
        UnsupportedModelError, match="output_fn failed on the model's output \\(a SequenceClassifierOutput\\)"
    ):
        Problem(hf_models.tiny_bert(), (inputs, labels), output_fn=lambda out: out.scores)


def test_init_state_of_a_tied_model_keeps_the_first_name_and_works_in_functional_call():
    model = hf_models.tiny_gpt2_lm()
    initial = {name: value.clone() for name, value in model.state_dict().items()}
    inputs, _ = hf_models.token_batch(4, seq_len=8, seed=5)
    problem = Problem(
        model, (inputs, torch.tensor([3, 7, 11, 40])), output_fn=lambda out: out.logits[:, -1], init_state=initial
    )
    assert "transformer.wte.weight" in problem.init_state and "lm_head.weight" not in problem.init_state
    with torch.no_grad():
        torch.testing.assert_close(problem.forward(problem.init_state, inputs), model(**inputs).logits[:, -1])
