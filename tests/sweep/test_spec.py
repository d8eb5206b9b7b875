import pytest

from deepscope.errors import DeepscopeError
from deepscope.sweep import SpecError, builtin_spec, expand, parse_spec, read_spec, trial_key
from deepscope.sweep.studies import BUILTIN_STUDIES
from tests.sweep.conftest import tiny_spec


def problems_of(raw):
    with pytest.raises(SpecError) as caught:
        parse_spec(raw)
    return dict(caught.value.problems)


def test_defaults_are_filled_and_parsing_is_idempotent(spec):
    parsed = parse_spec(spec)
    assert parsed["train"]["stop_loss"] == 0.01 and parsed["train"]["optimizer"] == "sgd"
    assert parse_spec(parsed) == parsed


@pytest.mark.parametrize(
    ("overrides", "path", "words"),
    [
        ({"bogus": 1}, "bogus", "unknown key"),
        ({"train.lr": -0.1}, "train.lr", "finite float > 0.0"),
        ({"train.lr": float("inf")}, "train.lr", "finite float"),
        ({"train.stop_loss": 0.0}, "train.stop_loss", "> 0.0"),
        ({"train.max_epochs": 0}, "train.max_epochs", "int >= 1"),
        ({"train.optimizer": "rmsprop"}, "train.optimizer", "'sgd'"),
        ({"train.momentum": 2}, "train.momentum", "<= 1.0"),
        ({"data.label_noise": 1.5}, "data.label_noise", "<= 1.0"),
        ({"seeds": []}, "seeds", "non-empty list"),
        ({"seeds": [1, 1]}, "seeds", "distinct"),
        ({"model.arch": "lstm"}, "model.arch", "'mlp'"),
        ({"model.widht": 3}, "model.widht", "unknown key"),
        ({"search.grid": {"model.width": []}}, "search.grid.model.width", "non-empty list"),
        ({"search.grid": {"train.lr": [0.1, -1.0]}}, "search.grid.train.lr[1]", "> 0.0"),
        ({"search.grid": {"train.lr": [0.1, 0.1]}}, "search.grid.train.lr", "repeated"),
        ({"search.grid": {"train.colour": [1]}}, "search.grid.train.colour", "not a searchable"),
        ({"search.grid": {"train.lr": {"loguniform": [1e-3, 1e-1]}}}, "search.grid.train.lr", "search.kind = 'random'"),
        ({"search.kind": "bayes"}, "search.kind", "'grid'"),
        ({"analyses": [{"name": "no_such_analysis"}]}, "analyses[0].name", "unknown analysis"),
        (
            {"analyses": [{"name": "measures", "options": {"max_sample": 3}}]},
            "analyses[0].options.max_sample",
            "max_samples",
        ),
        ({"analyses": [{"name": "measures", "colour": 1}]}, "analyses[0].colour", "unknown key"),
        ({"analyses": ["gap", "gap"]}, "analyses[1].name", "twice"),
        ({"dataset": {}}, "dataset.name", "missing"),
        ({"execution.threads": 0}, "execution.threads", "int >= 1"),
    ],
)
def test_each_mistake_is_named_by_its_key_path(overrides, path, words):
    found = problems_of(tiny_spec(**overrides))
    assert path in found, found
    assert words in found[path]


def test_all_mistakes_are_reported_at_once():
    found = problems_of(tiny_spec(**{"train.lr": 0, "train.batch_size": 0, "colour": "red"}))
    assert {"train.lr", "train.batch_size", "colour"} <= set(found)
    with pytest.raises(SpecError, match="3 problems.*Nothing was run"):
        parse_spec(tiny_spec(**{"train.lr": 0, "train.batch_size": 0, "colour": "red"}))


def test_grid_expansion_and_stable_keys(spec):
    spec["search"]["grid"]["train.lr"] = [0.01, 0.1]
    configs = expand(parse_spec(spec))
    assert len(configs) == 2 * 2 * 2  # widths x lrs x seeds
    assert len({trial_key(c) for c in configs}) == 8
    assert [trial_key(c) for c in expand(parse_spec(spec))] == [trial_key(c) for c in configs]
    # an int given where a float is expected normalises to the same key
    spec["train"]["lr"] = 1
    again = dict(spec)
    again["train"] = {**spec["train"], "lr": 1.0}
    assert [trial_key(c) for c in expand(parse_spec(spec))] == [trial_key(c) for c in expand(parse_spec(again))]


def test_random_search_draws_within_bounds_and_more_samples_keep_the_earlier_ones(spec):
    spec["search"] = {"kind": "random", "samples": 5, "seed": 3, "grid": {"train.lr": {"loguniform": [1e-3, 1e-1]}}}
    five = expand(parse_spec(spec))
    assert all(1e-3 <= c["train"]["lr"] <= 1e-1 for c in five)
    spec["search"]["samples"] = 8
    eight = expand(parse_spec(spec))
    assert [trial_key(c) for c in eight[: len(five)]] == [trial_key(c) for c in five]


def test_toml_and_yaml_files(tmp_path):
    toml = tmp_path / "s.toml"
    toml.write_text('name = "x"\n[dataset]\nname = "digits"\n[search.grid]\n"train.lr" = [0.1, 0.2]\n')
    assert len(expand(read_spec(toml))) == 2
    bad = tmp_path / "bad.toml"
    bad.write_text("name = \n")
    with pytest.raises(DeepscopeError, match="not valid TOML"):
        read_spec(bad)
    (tmp_path / "s.json").write_text("{}")
    with pytest.raises(DeepscopeError, match=r"\.toml, \.yaml"):
        read_spec(tmp_path / "s.json")
    with pytest.raises(DeepscopeError, match="No sweep spec"):
        read_spec(tmp_path / "missing.toml")
    with pytest.raises(DeepscopeError, match="not a regular file"):
        read_spec(tmp_path)
    yaml = pytest.importorskip("yaml")
    path = tmp_path / "s.yaml"
    path.write_text(yaml.safe_dump({"dataset": {"name": "digits"}, "train": {"lr": 0.2}}))
    assert read_spec(path)["train"]["lr"] == 0.2


@pytest.mark.parametrize("name", BUILTIN_STUDIES)
def test_builtin_studies_are_valid_and_large_enough(name):
    spec = builtin_spec(name)
    configs = expand(spec)
    assert len(configs) >= (96 if "small" in name else 500)
    assert len(spec["search"]["grid"]) >= 5
    assert any(a["name"] == "measures" for a in spec["analyses"])
    assert spec["train"]["stop_loss"] is not None


def test_other_architectures_search_their_own_options_and_dataclass_specs(tmp_path):
    import dataclasses

    from deepscope.sweep import resolve_spec

    spec = tiny_spec(
        **{"model": {"arch": "cnn2d", "channels": [4, 8]}, "search.grid": {"model.channels": [[4], [4, 8]]}}
    )
    configs = expand(parse_spec(spec))
    assert [c["model"]["channels"] for c in configs[::2]] == [[4], [4, 8]]
    found = problems_of(tiny_spec(**{"model": {"arch": "cnn2d"}, "search.grid": {"model.width": [4]}}))
    assert "not a searchable" in found["search.grid.model.width"]

    @dataclasses.dataclass
    class Spec:
        dataset: dict
        seeds: list

    assert resolve_spec(Spec({"name": "digits"}, [3]))["seeds"] == [3]
