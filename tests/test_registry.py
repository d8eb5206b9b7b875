import pytest
import torch
from torch import nn

from deepscope.errors import InvalidParameterError
from deepscope.guard import current_guard_report
from deepscope.registry import ANALYSES, analysis


def test_analysis_runs_inside_the_guard_and_registers():
    seen = {}

    @analysis("test_probe_analysis", takes="model", family="foundation")
    def probe(model):
        seen["report"] = current_guard_report(model)
        with torch.no_grad():
            model.weight.zero_()
        return "done"

    try:
        model = nn.Sequential(nn.Linear(2, 2), nn.Dropout(0.5))[0]
        before = model.weight.clone()
        assert probe(model) == "done"
        assert seen["report"] is not None
        assert torch.equal(model.weight, before)
        assert ANALYSES["test_probe_analysis"].function is probe
    finally:
        ANALYSES.pop("test_probe_analysis", None)


def test_analysis_rejects_a_non_model_first_argument():
    @analysis(takes="model_inputs", family="foundation", register=False)
    def needs_model(model, inputs):
        return 1

    with pytest.raises(InvalidParameterError, match="'model' parameter of needs_model must be a torch.nn.Module"):
        needs_model("not a model", None)
    with pytest.raises(InvalidParameterError):
        needs_model()
    with pytest.raises(InvalidParameterError, match="'takes' parameter of analysis"):
        analysis(takes="anything", family="x")


def test_analyses_are_declared_only_in_the_packages_load_all_analyses_imports():
    import re
    from pathlib import Path

    import deepscope
    from deepscope.registry import ANALYSIS_PACKAGES

    root = Path(deepscope.__file__).parent
    declaring = {
        path.relative_to(root).parts[0]
        for path in root.rglob("*.py")
        if path.name != "registry.py" and re.search(r"^@analysis\(", path.read_text(encoding="utf-8"), re.M)
    }
    assert declaring <= set(ANALYSIS_PACKAGES)


def test_a_scripted_model_is_refused_in_one_line_where_torch_func_cannot_call_it():
    # torch.func.functional_call raises "The stateless API can't be used with Jitted modules" on a
    # ScriptModule; every analysis that substitutes parameters turns it into one clear refusal.
    from deepscope import Problem
    from deepscope.curvature import hessian_eigenvalues
    from deepscope.errors import UnsupportedModelError

    scripted = torch.jit.script(torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.ReLU(), torch.nn.Linear(4, 2)))
    problem = Problem(scripted, (torch.randn(20, 3), torch.randint(0, 2, (20,))))
    with pytest.raises(UnsupportedModelError, match=r"hessian_eigenvalues .*TorchScript.*torch.export"):
        hessian_eigenvalues(problem, k=1)
