"""Bad inputs across the public API: each raises the exact DeepscopeError subclass with a clear message.

One parametrised table, in the spirit of scikit-learn's ``check_estimator`` tests of invalid
parameters: every case is a call that a careless or hostile user could make, the error class it
must raise (never a raw RuntimeError/TypeError/KeyError, never a silent NaN), and the key words its
message must contain (what was expected and what was received). The CLI has its own suite.
"""

import inspect
import tempfile
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

import deepscope.attribution as attribution
import deepscope.curvature as curvature
import deepscope.expressivity as expressivity
import deepscope.generalization as generalization
from deepscope import Problem, datasets, train
from deepscope.data import DatasetSplits
from deepscope.errors import DataError, DeepscopeError, InvalidParameterError, NonFiniteError, UnsupportedModelError
from deepscope.io import save_model
from deepscope.registry import load_all_analyses
from deepscope.testing import make_fixture

IPE, DE, UME, NFE = InvalidParameterError, DataError, UnsupportedModelError, NonFiniteError
DSE = DeepscopeError
_FILES = tempfile.TemporaryDirectory()  # data files written by the cases; removed at exit


def _xy(n=20, d=3, classes=2):
    generator = torch.Generator().manual_seed(0)
    return torch.randn(n, d, generator=generator), torch.randint(0, classes, (n,), generator=generator)


def _model(d=3, classes=2):
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(d, 5), nn.ReLU(), nn.Linear(5, classes))


def _problem(**kwargs):
    x, y = _xy()
    return Problem(_model(), (x, y), (x[:8], y[:8]), **kwargs)


def _nan_model():
    model = _model()
    with torch.no_grad():
        model[0].weight[2, 1] = float("nan")
    return model


class _TupleOut(nn.Module):
    def __init__(self):
        super().__init__()
        self.linear = nn.Linear(3, 2)

    def forward(self, x):
        return self.linear(x), x


class _Exp(nn.Module):
    """Finite weights, but the output and its gradient overflow for large inputs."""

    def forward(self, x):
        return torch.exp(x)


def _npz(late=None):
    """A small .npz file of 3 classes (plus one label ``late`` in its last row); returns its path."""
    y = np.arange(60) % 3
    if late is not None:
        y[-1] = late
    path = Path(_FILES.name) / f"labels-{late}.npz"
    np.savez(path, x=np.random.default_rng(0).normal(size=(60, 3)).astype("float32"), y=y)
    return path


def _splits():
    x, y = _xy()
    return DatasetSplits("toy", x, y, x[:6], y[:6], num_classes=2)


X, Y = _xy()
# one case per line (id, call, exact error class, message pattern): the table reads as a table
# fmt: off
CASES = [
    # ------------------------------------------------------------------ Problem
    ("problem/model-not-module", lambda: Problem("model", (X, Y)), IPE, r"'model' parameter of Problem must be a torch.nn.Module. Got 'model'"),
    ("problem/unknown-loss", lambda: Problem(_model(), (X, Y), loss="hinge"), IPE, r"'loss' parameter of Problem must be one of 'cross_entropy'.*Got 'hinge'"),
    ("problem/loss-not-callable", lambda: Problem(_model(), (X, Y), loss=3), IPE, r"'loss' parameter of Problem must be a loss name or a callable.*Got 3"),
    ("problem/batch-size-zero", lambda: Problem(_model(), (X, Y), batch_size=0), IPE, r"'batch_size' parameter of Problem must be an int >= 1. Got 0"),
    ("problem/batch-size-float", lambda: Problem(_model(), (X, Y), batch_size=2.5), IPE, r"'batch_size'.*int >= 1. Got 2.5"),
    ("problem/batch-size-bool", lambda: Problem(_model(), (X, Y), batch_size=True), IPE, r"'batch_size'.*Got True"),
    ("problem/data-a-string", lambda: Problem(_model(), "data.csv"), DE, r"'train' parameter of Problem must be a pair \(X, y\)"),
    ("problem/data-one-element", lambda: Problem(_model(), (X,)), DE, r"must be a pair \(X, y\)"),
    ("problem/test-not-data", lambda: Problem(_model(), (X, Y), 5), DE, r"'test' parameter of Problem must be a pair"),
    ("problem/length-mismatch", lambda: Problem(_model(), (X, Y[:5])), DE, r"as many targets as inputs.*\(20, 3\).*\(5,\)"),
    ("problem/nan-inputs", lambda: Problem(_model(), (X.clone().index_fill_(0, torch.tensor([3]), float("nan")), Y)), DE, r"train inputs contain NaN or infinite values in 1 example"),
    ("problem/inf-test-inputs", lambda: Problem(_model(), (X, Y), (torch.full((4, 3), float("inf")), Y[:4])), DE, r"test inputs contain NaN or infinite values in 4 example"),
    ("problem/nan-regression-targets", lambda: Problem(nn.Linear(3, 1), (X, torch.full((20,), float("nan"))), loss="mse"), DE, r"train targets contain NaN or infinite"),
    ("problem/empty", lambda: Problem(_model(), (X[:0], Y[:0])), DE, r"train data is empty"),
    ("problem/string-inputs", lambda: Problem(_model(), (np.array(["a", "b"]), np.array([0, 1]))), DE, r"train inputs must be a numeric tensor or array. Got an array of dtype <U1"),
    ("problem/labels-too-large", lambda: Problem(_model(), (X, Y + 2)), DE, r"Labels must lie in \[0, 1\] for a model with 2 outputs. Got labels in \[2, 3\]"),
    ("problem/labels-negative", lambda: Problem(_model(), (X, Y - 1)), DE, r"Labels must lie in \[0, 1\].*Got labels in \[-1, 0\]"),
    ("problem/late-bad-label", lambda: Problem(_model(), (torch.randn(300, 3), torch.cat([torch.zeros(299, dtype=torch.long), torch.tensor([9])])) ), DE, r"Got labels in \[0, 9\] \(the train data\): 1 label"),
    ("problem/float-labels", lambda: Problem(_model(), (X, Y.float())), DE, r"labels must be integers.*Got dtype torch.float32"),
    ("problem/column-labels", lambda: Problem(_model(), (X, Y[:, None])), DE, r"shape \(n_examples,\).*Got labels of shape \(20, 1\)"),
    ("problem/mse-width", lambda: Problem(_model(classes=3), (X, torch.randn(20)), loss="mse"), DE, r"1 value\(s\) per example but the model has 3 output\(s\)"),
    ("problem/bce-range", lambda: Problem(nn.Linear(3, 1), (X, torch.full((20,), 2.0)), loss="bce_with_logits"), DE, r"must lie in \[0, 1\]. Got values in \[2, 2\]"),
    ("problem/wrong-width", lambda: Problem(_model(d=4), (X, Y)), DE, r"cannot take the training inputs of shape \(3,\) per example"),
    ("problem/tuple-output", lambda: Problem(_TupleOut(), (X, Y)), DE, r"model must return a tensor. Got tuple"),
    ("problem/nan-weights", lambda: Problem(_nan_model(), (X, Y)), NFE, r"'0\.weight' \(layer '0', Linear\) has 1 of 15 values NaN"),
    ("problem/init-state-list", lambda: Problem(_model(), (X, Y), init_state=[1, 2]), IPE, r"'init_state' parameter of Problem must be a state_dict"),
    ("problem/init-state-missing", lambda: Problem(_model(), (X, Y), init_state={"0.weight": torch.zeros(5, 3)}), IPE, r"'init_state'.*missing \['0.bias'"),
    ("problem/init-state-shape", lambda: Problem(_model(), (X, Y), init_state={k: torch.zeros(1) for k in _model().state_dict()}), DE, r"init_state\['0.weight'\] has shape \(1,\) but the model's parameter has \(5, 3\)"),
    ("problem/unknown-device", lambda: Problem(_model(), (X, Y), device="gpu7"), IPE, r"'device' parameter of Problem must be a torch device.*Got 'gpu7'"),
    ("problem/split-name", lambda: _problem().evaluate("valid"), IPE, r"'split' parameter of Problem must be 'train' or 'test'. Got 'valid'"),
    ("problem/no-test-split", lambda: Problem(_model(), (X, Y)).evaluate("test"), DE, r"no test data"),
    ("problem/max-samples-zero", lambda: _problem().tensors(max_samples=0), IPE, r"'max_samples' parameter of Problem.batches must be an int >= 1. Got 0"),
    ("problem/batch-size-zero-in-batches", lambda: list(_problem().batches(batch_size=0)), IPE, r"'batch_size' parameter of Problem.batches must be an int >= 1. Got 0"),
    ("problem/evaluate-params-shape", lambda: _problem().evaluate(params={"0.weight": torch.zeros(1)}), IPE, r"'params\['0.weight'\]' parameter of Problem.evaluate must be a tensor of shape \(5, 3\)"),
    ("problem/evaluate-params-unknown", lambda: _problem().evaluate(params={"fc.weight": torch.zeros(1)}), IPE, r"'params' parameter of Problem.evaluate must be a mapping over the model's names"),
    ("problem/from-dataset-not-splits", lambda: Problem.from_dataset(_model(), (X, Y)), IPE, r"'dataset' parameter of Problem.from_dataset must be a DatasetSplits"),
    # ------------------------------------------------------------------ datasets
    ("datasets/unknown-name", lambda: datasets.load("imagenet"), DE, r"Unknown dataset 'imagenet'. Available: digits"),
    ("datasets/name-not-string", lambda: datasets.load(3), IPE, r"'name_or_path' parameter of deepscope.datasets.load must be a dataset name or a file path. Got int"),
    ("datasets/negative-seed", lambda: datasets.load("digits", seed=-1), IPE, r"'seed'.*Got -1"),
    ("datasets/test-fraction-above-one", lambda: datasets.load("digits", test_fraction=1.5), IPE, r"'test_fraction'.*Got 1.5"),
    ("datasets/n-samples-zero", lambda: datasets.load("digits", n_samples=0), IPE, r"'n_samples'.*Got 0"),
    ("datasets/unknown-option", lambda: datasets.load("digits", colour=True), IPE, r"Unknown option\(s\) \['colour'\] for dataset 'digits'"),
    ("datasets/missing-file", lambda: datasets.load("/nonexistent/data.csv"), DE, r"data.csv"),
    ("datasets/splits-length-mismatch", lambda: DatasetSplits("toy", X, Y[:3], X, Y), DE, r"x_train has 20 rows but y_train has 3"),
    ("datasets/splits-not-tensors", lambda: DatasetSplits("toy", [1, 2], [0, 1], X, Y), IPE, r"'x_train' parameter of DatasetSplits must be a tensor.*Got \[1, 2\]"),
    ("datasets/num-classes-zero", lambda: datasets.load(_npz(), num_classes=0), IPE, r"'num_classes' parameter of deepscope.datasets.load must be None or an int >= 1. Got 0"),
    ("datasets/num-classes-too-small", lambda: datasets.load(_npz(), num_classes=2), DE, r"labels must be integers 0..1; the train labels range over 0..2"),
    ("datasets/late-label-gap", lambda: datasets.load(_npz(late=7)), DE, r"class\(es\) 3, 4, 5, 6 never occur"),
    ("datasets/splits-empty-train", lambda: DatasetSplits("toy", X[:0], Y[:0], X, Y), DE, r"empty training split"),
    ("datasets/cache-not-bool", lambda: datasets.load("mnist1d", cache="yes"), IPE, r"'cache' parameter of deepscope.datasets.load\('mnist1d'\) must be a bool.*Got 'yes'"),
    ("datasets/label-column-for-npz", lambda: datasets.load(_npz(), label_column="y"), IPE, r"'label_column' parameter of deepscope.datasets.load must be None for a .npz file \(only a CSV file has columns\). Got 'y'"),
    ("datasets/label-column-not-str", lambda: datasets.load(_npz(), label_column=3), IPE, r"'label_column'.*a column name.*Got 3"),
    ("datasets/standardize-not-bool", lambda: datasets.load(_npz(), standardize="no"), IPE, r"'standardize' parameter of deepscope.datasets.load must be a bool. Got 'no'"),
    ("io/save-model-path-number", lambda: save_model(_model(), 3), IPE, r"'path' parameter of save_model must be a file path \(str or pathlib.Path\). Got 3"),
    # ------------------------------------------------------------------ train
    ("train/model-not-module", lambda: train("model", _splits(), epochs=1), IPE, r"'model' parameter of train must be"),
    ("train/negative-epochs", lambda: train(_model(), _splits(), epochs=-1), IPE, r"'epochs' parameter of train must be an int >= 0. Got -1"),
    ("train/zero-lr", lambda: train(_model(), _splits(), lr=0.0), IPE, r"'lr' parameter of train.*Got 0.0"),
    ("train/infinite-lr", lambda: train(_model(), _splits(), lr=float("inf")), IPE, r"'lr' parameter of train must be a finite float"),
    ("train/unknown-optimizer", lambda: train(_model(), _splits(), optimizer="adamw2"), IPE, r"'optimizer' parameter of train.*Got 'adamw2'"),
    ("train/batch-size-zero", lambda: train(_model(), _splits(), batch_size=0), IPE, r"'batch_size' parameter of train must be an int >= 1. Got 0"),
    ("train/bad-dataset", lambda: train(_model(), "digits"), DE, r"'dataset' parameter of train must be a DatasetSplits or a pair.*Got 'digits'"),
    ("train/wrong-width", lambda: train(_model(d=4), _splits(), epochs=1), DE, r"cannot take the training inputs of shape \(3,\) per example"),
    ("train/labels-out-of-range", lambda: train(_model(), ((X, Y + 5), None), epochs=1), DE, r"train labels must lie in \[0, 1\] for a model with 2 outputs. Got labels in \[5, 6\]"),
    ("train/negative-seed", lambda: train(_model(), _splits(), seed=-1), IPE, r"'seed' parameter of train must be an int >= 0. Got -1"),
    ("train/seed-beyond-torch", lambda: train(_model(), _splits(), seed=10**20), IPE, r"'seed' parameter of train must be an int >= 0 and at most 2\*\*64 - 1 \(torch's seed range\). Got 100000000000000000000"),
    ("datasets/seed-beyond-torch", lambda: datasets.load("digits", seed=2**64), IPE, r"'seed' parameter of deepscope.datasets.load\('digits'\) must be an int >= 0 and at most 2\*\*64 - 1"),
    ("attribution/seed-beyond-torch", lambda: attribution.smoothgrad(_model(), X, seed=2**64), IPE, r"'seed' parameter of smoothgrad must be an int >= 0 and at most 2\*\*64 - 1"),
    ("train/diverges-at-the-last-step", lambda: train(_model(), _splits(), epochs=1, lr=1e308), DSE, r"Training diverged: the weights are not finite after the last step: '\d\.(weight|bias)'"),
    ("train/nan-stop-loss", lambda: train(_model(), _splits(), stop_loss=float("nan")), IPE, r"'stop_loss' parameter of train must be a finite float > 0.0. Got nan"),
    ("train/negative-weight-decay", lambda: train(_model(), _splits(), weight_decay=-1.0), IPE, r"'weight_decay'.*>= 0.0. Got -1.0"),
    ("train/nan-inputs", lambda: train(_model(), ((X * float("nan"), Y), None)), DE, r"train inputs contain NaN or infinite values in 20 example"),
    # ------------------------------------------------------------------ attribution
    ("attribution/model-not-module", lambda: attribution.saliency("model", X), IPE, r"'model' parameter of saliency must be a torch.nn.Module"),
    ("attribution/inputs-not-tensor", lambda: attribution.saliency(_model(), X.tolist()), IPE, r"'inputs' parameter of saliency must be a torch.Tensor"),
    ("attribution/inputs-one-dimensional", lambda: attribution.saliency(_model(), X[0]), IPE, r"'inputs'.*\(batch, \*features\). Got Tensor of shape \(3,\)"),
    ("attribution/inputs-empty", lambda: attribution.integrated_gradients(_model(), X[:0]), IPE, r"'inputs'.*non-empty"),
    ("attribution/integer-inputs", lambda: attribution.saliency(_model(), X.long()), IPE, r"'inputs'.*floating-point tensor.*Got Tensor of shape \(20, 3\) and dtype torch.int64"),
    ("attribution/nan-inputs", lambda: attribution.input_x_gradient(_model(), X.clone().fill_(float("nan"))), DE, r"'inputs' of input_x_gradient contain 60 NaN"),
    ("attribution/wrong-width", lambda: attribution.saliency(_model(d=4), X), DE, r"The model cannot take the inputs of shape \(3,\) per example"),
    ("attribution/target-out-of-range", lambda: attribution.saliency(_model(), X, target=2), IPE, r"'target'.*class indices in \[0, 1\].*Got 2"),
    ("attribution/target-list-wrong-length", lambda: attribution.saliency(_model(), X, target=[0, 1]), IPE, r"a list of 20 int\(s\) \(one target per example"),
    ("attribution/target-float-tensor", lambda: attribution.saliency(_model(), X, target=torch.zeros(20)), IPE, r"'target'.*integer class indices"),
    ("attribution/target-bool", lambda: attribution.saliency(_model(), X, target=True), IPE, r"'target'.*Got True"),
    ("attribution/target-wrong-shape", lambda: attribution.saliency(_model(), X, target=torch.zeros(2, 3, dtype=torch.long)), IPE, r"'target'.*\(n_targets, 20\)"),
    ("attribution/baseline-wrong-shape", lambda: attribution.integrated_gradients(_model(), X, baseline=torch.zeros(4)), IPE, r"'baseline' parameter of integrated_gradients must be a tensor of shape \(20, 3\) or \(3,\)"),
    ("attribution/baseline-inf-number", lambda: attribution.integrated_gradients(_model(), X, baseline=float("inf")), IPE, r"'baseline'.*finite number"),
    ("attribution/baseline-nan-tensor", lambda: attribution.integrated_gradients(_model(), X, baseline=torch.full((3,), float("nan"))), DE, r"'baseline' of integrated_gradients contains NaN"),
    ("attribution/max-batch-zero", lambda: attribution.saliency(_model(), X, max_batch=0), IPE, r"'max_batch' parameter of saliency must be an int >= 1. Got 0"),
    ("attribution/output-fn-not-callable", lambda: attribution.saliency(_TupleOut(), X, output_fn="logits"), IPE, r"'output_fn'.*a callable"),
    ("attribution/tuple-output", lambda: attribution.saliency(_TupleOut(), X), UME, r"returned a tuple.*pass output_fn"),
    ("attribution/nan-weights", lambda: attribution.integrated_gradients(_nan_model(), X), NFE, r"integrated_gradients: the model's weights are not finite: '0\.weight'"),
    ("attribution/overflow", lambda: attribution.saliency(nn.Sequential(nn.Linear(3, 2), _Exp()), X * 1e4), NFE, r"saliency: the attributions of .* are NaN or infinite"),
    ("attribution/ig-steps-zero", lambda: attribution.integrated_gradients(_model(), X, steps=0), IPE, r"'steps' parameter of integrated_gradients"),
    ("attribution/smoothgrad-samples-zero", lambda: attribution.smoothgrad(_model(), X, samples=0), IPE, r"'samples' parameter of smoothgrad"),
    ("attribution/grad-cam-no-conv", lambda: attribution.grad_cam(_model(), X), UME, r"grad_cam"),
    ("attribution/occlusion-window-too-large", lambda: attribution.occlusion(_model(), X, window=(5,)), IPE, r"'window' parameter of occlusion must be no larger than the feature shape \(3,\). Got \(5,\)"),
    ("attribution/occlusion-window-zero", lambda: attribution.occlusion(_model(), X, window=0), IPE, r"'window' parameter of occlusion must be an int >= 1"),
    ("attribution/shapley-samples", lambda: attribution.shapley(_model(), X, samples=0), IPE, r"'samples' parameter of shapley must be an int >= 2. Got 0"),
    ("attribution/lrp-rule", lambda: attribution.lrp(_model(), X, rule="magic"), IPE, r"'rule' parameter of lrp must be one of 'epsilon'"),
    ("attribution/deeplift-baseline", lambda: attribution.deeplift(_model(), X, baseline=torch.zeros(7)), IPE, r"'baseline' parameter of deeplift must be a tensor of shape \(20, 3\) or \(3,\). Got Tensor of shape \(7,\)"),
    ("attribution/ism-not-one-hot", lambda: attribution.ism(_model(), X), DE, r"'inputs' of ism must be one-hot sequences"),
    ("attribution/axioms-method", lambda: attribution.check_axioms(_model(), X, method="astrology"), IPE, r"'method' parameter of check_axioms must be one of 'saliency'"),
    ("attribution/axioms-target-out-of-range", lambda: attribution.check_axioms(_model(), X[:3], target=-1), IPE, r"'target' parameter of check_axioms must be class indices in \[0, 1\].*Got -1"),
    ("attribution/axioms-target-float", lambda: attribution.check_axioms(_model(), X[:3], target=float("nan")), IPE, r"'target' parameter of check_axioms.*Got nan"),
    ("attribution/axioms-axioms-not-tuple", lambda: attribution.check_axioms(_model(), X[:3], axioms=2.5), IPE, r"'axioms' parameter of check_axioms must be None or a tuple of 'completeness'.*Got 2.5"),
    ("attribution/axioms-inputs-list", lambda: attribution.check_axioms(_model(), X[:3].tolist()), IPE, r"'inputs' parameter of check_axioms must be a torch.Tensor"),
    ("attribution/axioms-wrong-width", lambda: attribution.check_axioms(_model(d=4), X[:3]), DE, r"The model cannot take the inputs of shape \(3,\) per example"),
    ("attribution/smoothgrad-seed-float", lambda: attribution.smoothgrad(_model(), X, seed=2.5), IPE, r"'seed' parameter of smoothgrad must be an int >= 0. Got 2.5"),
    ("attribution/smoothgrad-method-options", lambda: attribution.smoothgrad(_model(), X, method_options=2.5), IPE, r"'method_options' parameter of smoothgrad must be None or a dict.*Got 2.5"),
    ("attribution/saliency-absolute-string", lambda: attribution.saliency(_model(), X, absolute="no"), IPE, r"'absolute' parameter of saliency must be a bool. Got 'no'"),
    # ------------------------------------------------------------------ generalization
    ("generalization/not-a-problem", lambda: generalization.classic_bounds(_model()), IPE, r"'problem' parameter of classic_bounds must be a deepscope.Problem"),
    ("generalization/delta-zero", lambda: generalization.classic_bounds(_problem(), delta=0.0), IPE, r"'delta' parameter of classic_bounds.*Got 0.0"),
    ("generalization/delta-above-one", lambda: generalization.classic_bounds(_problem(), delta=1.5), IPE, r"'delta'.*Got 1.5"),
    ("generalization/confidence-one", lambda: generalization.gap_estimate(_problem(), confidence=1.0), IPE, r"'confidence' parameter of gap_estimate must be a float in the open interval \(0, 1\). Got 1.0"),
    ("generalization/gap-no-test-data", lambda: generalization.gap_estimate(Problem(_model(), (X, Y))), DE, r"^gap_estimate needs test data: build the Problem with test=\(X, y\)"),
    ("generalization/learning-curve-regression", lambda: generalization.learning_curve(Problem(nn.Linear(3, 1), (X, torch.randn(20)), (X, torch.randn(20)), loss="mse"), epochs=1), UME, r"^learning_curve needs a classification loss. Got 'mse'"),
    ("generalization/test-bound-negative-errors", lambda: generalization.test_set_bound(-1, 10), IPE, r"'errors' parameter of test_set_bound must be an int >= 0. Got -1"),
    ("generalization/test-bound-too-many-errors", lambda: generalization.test_set_bound(11, 10), IPE, r"errors.*10"),
    ("generalization/kl-inverse-q", lambda: generalization.kl_inverse_upper(2.0, 1.0), IPE, r"'q' parameter of kl_inverse_upper.*Got 2.0"),
    ("generalization/kendall-lengths", lambda: generalization.kendall_tau([1.0, 2.0, 3.0], [1.0, 2.0]), DE, r"one value per model. Got 3 and 2"),
    ("generalization/kendall-one-model", lambda: generalization.kendall_tau([1.0], [1.0]), DE, r"at least two models to rank. Got 1"),
    ("generalization/measures-max-samples", lambda: generalization.measures(_problem(), max_samples=0), IPE, r"'max_samples' parameter of measures must be an int >= 1. Got 0"),
    ("generalization/learning-fractions", lambda: generalization.learning_curve(_problem(), fractions=(0.5, 2.0), epochs=1), IPE, r"'fractions' parameter of learning_curve.*\[0.0, 1.0\]. Got 2.0"),
    ("generalization/memorisation-target", lambda: generalization.memorisation_probe(_problem(), target_accuracy=2.0), IPE, r"'target_accuracy'.*Got 2.0"),
    ("generalization/label-noise-levels", lambda: generalization.label_noise_sensitivity(_problem(), levels=(1.5,)), IPE, r"'levels' parameter of label_noise_sensitivity.*Got 1.5"),
    ("generalization/regularisation-settings", lambda: generalization.regularisation_comparison(_problem(), settings=("magic",)), IPE, r"'settings'.*subset of none, weight_decay.*Got \('magic',\)"),
    ("generalization/test-bound-empty", lambda: generalization.test_set_bound(0, 0), DE, r"test set is empty \(n = 0\)"),
    ("generalization/kl-inverse-c", lambda: generalization.kl_inverse_upper(0.1, -1.0), IPE, r"'c' parameter of kl_inverse_upper must be a finite float >= 0.0. Got -1.0"),
    ("generalization/binary-kl-q", lambda: generalization.binary_kl(1.5, 0.5), IPE, r"'q' parameter of binary_kl.*Got 1.5"),
    ("generalization/spectral-not-module", lambda: generalization.spectral_metrics("model"), IPE, r"'model' parameter of spectral_metrics must be a torch.nn.Module"),
    ("generalization/unknown-family", lambda: generalization.measures(_problem(), families=("astrology",)), IPE, r"'families'.*astrology"),
    ("generalization/unknown-objective", lambda: generalization.pac_bayes_certificate(_problem(), objective="magic"), IPE, r"'objective' parameter of pac_bayes_certificate.*Got 'magic'"),
    ("generalization/rank-no-measures", lambda: generalization.rank_measures({}, [0.1, 0.2], {"width": [1, 2]}), IPE, r"'measures' parameter of rank_measures must be a non-empty mapping.*Got \{\}"),
    ("generalization/rank-hyperparameters-list", lambda: generalization.rank_measures({"m": [1, 2]}, [0.1, 0.2], [1, 2]), IPE, r"'hyperparameters' parameter of rank_measures must be a mapping"),
    ("generalization/kendall-strings", lambda: generalization.kendall_tau(["a", "b"], [1.0, 2.0]), DE, r"'measure' must be numbers, one per model. Got \['a', 'b'\]"),
    ("generalization/learning-curve-batch-size", lambda: generalization.learning_curve(_problem(), batch_size=0), IPE, r"'batch_size' parameter of learning_curve must be an int >= 1. Got 0"),
    ("generalization/learning-curve-fractions-none", lambda: generalization.learning_curve(_problem(), fractions=None), IPE, r"'fractions' parameter of learning_curve must be a non-empty list of finite floats in \[0.0, 1.0\]. Got None"),
    ("generalization/label-noise-lr-nan", lambda: generalization.label_noise_sensitivity(_problem(), lr=float("nan")), IPE, r"'lr' parameter of label_noise_sensitivity must be a finite float > 0.0. Got nan"),
    ("generalization/label-noise-no-levels", lambda: generalization.label_noise_sensitivity(_problem(), levels=()), IPE, r"'levels' parameter of label_noise_sensitivity must be a non-empty list"),
    ("generalization/memorisation-batch-size", lambda: generalization.memorisation_probe(_problem(), batch_size=2.5), IPE, r"'batch_size' parameter of memorisation_probe must be an int >= 1. Got 2.5"),
    ("generalization/regularisation-dropout", lambda: generalization.regularisation_comparison(_problem(), dropout=2.0), IPE, r"'dropout' parameter of regularisation_comparison must be a finite float in \[0.0, 1.0\]. Got 2.0"),
    ("generalization/regularisation-settings-string", lambda: generalization.regularisation_comparison(_problem(), settings="none"), IPE, r"'settings' parameter of regularisation_comparison must be a non-empty list.*Got 'none'"),
    ("generalization/granulated-hyperparameters", lambda: generalization.granulated_tau([1, 2], [1, 2], None), IPE, r"'hyperparameters' parameter of granulated_tau must be a mapping.*Got None"),
    ("generalization/cmi-max-condition", lambda: generalization.conditional_mutual_information([1, 2], [1, 2], {"a": [1, 2]}, max_condition=2.5), IPE, r"'max_condition' parameter of conditional_mutual_information must be an int >= 0. Got 2.5"),
    ("generalization/cmi-hyperparameter-length", lambda: generalization.conditional_mutual_information([1, 2, 3], [1, 2, 3], {"a": [1]}), DE, r"hyperparameter 'a' has 1 values for 3 models"),
    ("generalization/pac-bayes-learning-rate", lambda: generalization.pac_bayes_certificate(_problem(), learning_rate=-1.0), IPE, r"'learning_rate' parameter of pac_bayes_certificate must be a finite float > 0.0. Got -1.0"),
    ("generalization/pac-bayes-p-min", lambda: generalization.pac_bayes_certificate(_problem(), p_min=0.0), IPE, r"'p_min' parameter of pac_bayes_certificate must be a finite float > 0.0. Got 0.0"),
    ("generalization/pac-bayes-batch-size", lambda: generalization.pac_bayes_certificate(_problem(), batch_size=2.5), IPE, r"'batch_size' parameter of pac_bayes_certificate must be an int >= 1. Got 2.5"),
    ("generalization/pac-bayes-prior-sigmas", lambda: generalization.pac_bayes_certificate(_problem(), prior_sigmas="abc"), IPE, r"'prior_sigmas' parameter of pac_bayes_certificate must be a non-empty list of finite floats"),
    ("generalization/regularisation-no-settings", lambda: generalization.regularisation_comparison(_problem(), settings=()), IPE, r"'settings' parameter of regularisation_comparison must be a non-empty list"),
    ("generalization/nan-weights", lambda: generalization.classic_bounds(Problem(_nan_model(), (X, Y))), NFE, r"not finite"),
    # ------------------------------------------------------------------ curvature
    ("curvature/k-zero", lambda: curvature.hessian_eigenvalues(_problem(), k=0), IPE, r"The 'k' parameter of hessian_eigenvalues must be an int >= 1. Got 0 instead."),
    ("curvature/which", lambda: curvature.hessian_eigenvalues(_problem(), which="middle"), IPE, r"'which' parameter of hessian_eigenvalues.*Got 'middle'"),
    ("curvature/tol-negative", lambda: curvature.hessian_eigenvalues(_problem(), tol=-1.0), IPE, r"'tol' parameter of hessian_eigenvalues"),
    ("curvature/trace-method", lambda: curvature.hessian_trace(_problem(), method="guess"), IPE, r"'method' parameter of hessian_trace.*Got 'guess'"),
    ("curvature/vector-shape", lambda: curvature.hessian_vector_product(_problem(), torch.zeros(3)), IPE, r"'vector' parameter of hessian_vector_product"),
    ("curvature/split", lambda: curvature.hessian_vector_product(_problem(), split="valid"), IPE, r"'split'.*Got 'valid'"),
    ("curvature/density-vectors-zero", lambda: curvature.hessian_density(_problem(), n_vectors=0), IPE, r"'n_vectors' parameter of hessian_density"),
    ("curvature/surface-grid", lambda: curvature.loss_surface(_problem(), grid_size=1), IPE, r"'grid_size' parameter of loss_surface"),
    ("curvature/ntk-inputs", lambda: curvature.ntk(_model(), "inputs"), IPE, r"'inputs' parameter of ntk"),
    ("curvature/ntk-mode", lambda: curvature.ntk(_model(), X, mode="diagonal"), IPE, r"'mode' parameter of ntk.*Got 'diagonal'"),
    ("curvature/not-a-problem", lambda: curvature.hessian_trace((X, Y)), IPE, r"'problem' parameter of hessian_trace must be a deepscope.Problem"),
    ("curvature/model-not-a-problem", lambda: curvature.hessian_eigenvalues(_model()), IPE, r"'problem' parameter of hessian_eigenvalues must be a deepscope.Problem. Got Sequential"),
    ("curvature/max-samples-zero", lambda: curvature.hessian_eigenvalues(_problem(), max_samples=0), IPE, r"'max_samples' parameter of hessian_eigenvalues must be an int >= 1. Got 0"),
    ("curvature/parameter-names", lambda: curvature.hessian_eigenvalues(_problem(), parameter_names=["nope"]), IPE, r"'parameter_names'.*\['0.weight', '0.bias'"),
    ("curvature/dense-too-many-params", lambda: curvature.dense_hessian(_problem(), max_params=3), IPE, r"'max_params' parameter of dense_hessian must be at least the number of parameters \(32\). Got 3"),
    ("curvature/trace-kind", lambda: curvature.hessian_trace(_problem(), kind="fisher"), IPE, r"'kind' parameter of hessian_trace must be one of 'hessian', 'gauss_newton'. Got 'fisher'"),
    ("curvature/interpolation-other", lambda: curvature.loss_interpolation(_problem(), other=nn.Linear(3, 2)), IPE, r"'other' parameter of loss_interpolation must be weights for every parameter"),
    ("curvature/ntk-targets-rows", lambda: curvature.ntk(_model(), X, torch.zeros(3, dtype=torch.long)), IPE, r"'targets' parameter of ntk must be a tensor with 20 rows"),
    ("curvature/ntk-wrong-width", lambda: curvature.ntk(_model(d=4), X), DE, r"The model cannot take the inputs of shape \(3,\) per example: mat1 and mat2"),
    ("curvature/ntk-ridge-negative", lambda: curvature.ntk(_model(), X, ridge=-1.0), IPE, r"'ridge' parameter of ntk must be a finite float >= 0.0. Got -1.0"),
    ("curvature/ntk-memory-budget", lambda: curvature.ntk(_model(), X, memory_budget_mb="x"), IPE, r"'memory_budget_mb' parameter of ntk must be a finite float >= 0.0. Got 'x'"),
    ("curvature/ntk-nan-inputs", lambda: curvature.ntk(_model(), X.clone().fill_(float("nan"))), DE, r"non-finite"),
    ("curvature/seed-nan", lambda: curvature.hessian_eigenvalues(_problem(), seed=float("nan")), IPE, r"'seed' parameter of hessian_eigenvalues must be an int >= 0. Got nan"),
    ("curvature/seed-none", lambda: curvature.hessian_density(_problem(), seed=None), IPE, r"'seed' parameter of hessian_density must be an int >= 0. Got None"),
    ("curvature/progress-string", lambda: curvature.hessian_trace(_problem(), progress="no"), IPE, r"'progress' parameter of hessian_trace must be a bool. Got 'no'"),
    ("curvature/parameter-names-string", lambda: curvature.hessian_trace(_problem(), parameter_names="0.weight"), IPE, r"'parameter_names' parameter of hessian_trace must be None or a list of parameter names \(str\). Got '0.weight'"),
    ("curvature/parameter-names-number", lambda: curvature.hessian_vector_product(_problem(), parameter_names=3), IPE, r"'parameter_names' parameter of hessian_vector_product must be None or a list"),
    ("curvature/by-layer-tol-nan", lambda: curvature.hessian_by_layer(_problem(), tol=float("nan")), IPE, r"'tol' parameter of hessian_by_layer must be a finite float > 0.0. Got nan"),
    ("curvature/by-layer-max-iter-zero", lambda: curvature.hessian_by_layer(_problem(), max_iter=0), IPE, r"'max_iter' parameter of hessian_by_layer must be an int >= 1. Got 0"),
    # ------------------------------------------------------------------ expressivity
    ("expressivity/regions-smooth-model", lambda: expressivity.linear_regions(nn.Sequential(nn.Linear(2, 4), nn.Tanh(), nn.Linear(4, 2)), torch.randn(4, 2) ), UME, r"Tanh"),
    ("expressivity/trajectory-curve", lambda: expressivity.trajectory_length(_model(), X[:2], curve="spiral"), IPE, r"'curve' parameter of trajectory_length.*Got 'spiral'"),
    ("expressivity/signal-depth-zero", lambda: expressivity.signal_propagation("tanh", depth=0), IPE, r"'depth' parameter of signal_propagation must be an int >= 1. Got 0"),
    ("expressivity/signal-activation", lambda: expressivity.signal_propagation("sparkle"), IPE, r"'activation'.*sparkle"),
    ("expressivity/catalogue-unknown", lambda: expressivity.activation_catalogue(["sparkle"]), IPE, r"sparkle"),
    ("expressivity/capacity-not-module", lambda: expressivity.capacity("model"), IPE, r"'model' parameter of capacity must be a torch.nn.Module"),
    ("expressivity/regions-wrong-width", lambda: expressivity.linear_regions(_model(d=4), torch.randn(4, 3)), IPE, r"input domain does not fit the model: layer '0' \(Linear\) failed on inputs of shape \(3,\)"),
    ("expressivity/lipschitz-wrong-width", lambda: expressivity.lipschitz(_model(d=4), X), DE, r"The model cannot take the inputs of shape \(3,\) per example: mat1 and mat2"),
    ("expressivity/layer-health-wrong-width", lambda: expressivity.layer_health(_model(d=4), X), DE, r"The model cannot take the inputs of shape \(3,\) per example: mat1 and mat2"),
    ("expressivity/capacity-wrong-width", lambda: expressivity.capacity(_model(d=4), X), DE, r"The model cannot take the inputs of shape \(3,\) per example: mat1 and mat2"),
    ("expressivity/montufar-input-dim-zero", lambda: expressivity.montufar_lower_bound(0, [4, 4]), IPE, r"'input_dim' parameter of montufar_lower_bound must be an int >= 1. Got 0"),
    ("expressivity/serra-width-zero", lambda: expressivity.serra_upper_bound(2, [4, 0]), IPE, r"'widths' parameter of serra_upper_bound must be a list of ints >= 1.*Got \[4, 0\]"),
    ("expressivity/verdict-width-zero", lambda: expressivity.initialization_verdict(_model(), width=0), IPE, r"'width' parameter of initialization_verdict must be an int >= 1. Got 0"),
    ("expressivity/verdict-networks-owner", lambda: expressivity.initialization_verdict(_model(), networks=0), IPE, r"'networks' parameter of initialization_verdict must be an int >= 1. Got 0"),
    ("expressivity/capacity-regions-not-result", lambda: expressivity.capacity(_model(), regions=3), IPE, r"'regions' parameter of capacity must be None or a LinearRegions result.*Got 3"),
    ("expressivity/capacity-input-dim-and-inputs", lambda: expressivity.capacity(_model(), X, input_dim=5), IPE, r"'input_dim' parameter of capacity must be None when inputs are given.*Got 5"),
    ("expressivity/lipschitz-seed-string", lambda: expressivity.lipschitz(_model(), X, seed="x"), IPE, r"'seed' parameter of lipschitz must be an int >= 0. Got 'x'"),
    ("expressivity/layer-health-scalar-targets", lambda: expressivity.layer_health(_model(), X, 3), IPE, r"'targets' parameter of layer_health must be 20 integer class labels in \[0, 1\], one per input. Got 3"),
    ("expressivity/layer-health-targets-range", lambda: expressivity.layer_health(_model(), X, Y + 5), IPE, r"'targets' parameter of layer_health.*Got labels in \[5, 6\]"),
    ("expressivity/layer-health-float-targets", lambda: expressivity.layer_health(_model(), X, Y.float()), IPE, r"'targets' parameter of layer_health.*integer class labels.*dtype torch.float32"),
    ("expressivity/lipschitz-input-shape-negative", lambda: expressivity.lipschitz(_model(), input_shape=-1), IPE, r"'input_shape' parameter of lipschitz must be a tuple of ints >= 1 \(one example's shape\). Got -1"),
    ("expressivity/lipschitz-input-shape-and-inputs", lambda: expressivity.lipschitz(_model(), X, input_shape=(3,)), IPE, r"'input_shape' parameter of lipschitz must be None when inputs are given"),
    ("expressivity/catalogue-not-a-list", lambda: expressivity.activation_catalogue(2.5), IPE, r"'activations' parameter of activation_catalogue must be None or a non-empty list.*Got 2.5"),
    ("expressivity/catalogue-empty", lambda: expressivity.activation_catalogue([]), IPE, r"'activations' parameter of activation_catalogue.*Got \[\]"),
    ("expressivity/universal-widths-number", lambda: expressivity.universal_approximation(widths=8), IPE, r"'widths' parameter of universal_approximation must be a non-empty list of ints >= 1. Got 8"),
    ("expressivity/universal-learning-rate", lambda: expressivity.universal_approximation(learning_rate=float("nan")), IPE, r"'learning_rate' parameter of universal_approximation must be a finite float > 0.0. Got nan"),
    ("expressivity/trajectory-too-few", lambda: expressivity.trajectory_length(_model(), X[:2]), IPE, r"'inputs' parameter of trajectory_length must be at least 3 points"),
    ("expressivity/trajectory-points", lambda: expressivity.trajectory_length(_model(), X[:4], points=0), IPE, r"'points' parameter of trajectory_length must be an int >= 8. Got 0"),
    ("expressivity/signal-sigma", lambda: expressivity.signal_propagation("tanh", sigma_w=-1.0), IPE, r"'sigma_w' parameter of signal_propagation must be a finite float > 0.0. Got -1.0"),
    ("expressivity/universal-target", lambda: expressivity.universal_approximation(target="sparkle"), IPE, r"'target' parameter of universal_approximation must be one of \['bump'.*Got 'sparkle'"),
    ("expressivity/interpolating-width", lambda: expressivity.interpolating_relu_network(lambda x: x, 0), IPE, r"'width' parameter of interpolating_relu_network must be an int >= 1. Got 0"),
    # ------------------------------------------------------------------ leftovers of the fuzz pass
    ("measures/families-none", lambda: generalization.measures(_problem(), families=None), IPE, r"'families' parameter of measures must be a list of family names"),
    ("measures/families-a-string", lambda: generalization.measures(_problem(), families="norm"), IPE, r"'families'.*list of family names.*Got 'norm'"),
    ("fit_power_law/strings", lambda: generalization.fit_power_law("x"), IPE, r"'eigenvalues' parameter of fit_power_law must be a sequence of numbers"),
    ("hvp/vector-a-list", lambda: curvature.hessian_vector_product(_problem(), [1.0, 2.0]), IPE, r"'vector'.*flat tensor of length"),
    ("eigenvalues/init-vector-a-string", lambda: curvature.hessian_eigenvalues(_problem(), k=1, init_vector="x"), IPE, r"'init_vector'.*flat tensor of length"),
]
# fmt: on


@pytest.mark.parametrize(("call", "error", "match"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_bad_input_raises_the_exact_error(call, error, match):
    with pytest.raises(error, match=match) as caught:
        call()
    assert type(caught.value) is error, f"expected exactly {error.__name__}, got {type(caught.value).__name__}"


def test_the_suite_is_large_enough_and_has_unique_ids():
    assert len(CASES) >= 60
    assert len({c[0] for c in CASES}) == len(CASES)


@pytest.mark.parametrize("analysis", [expressivity.lipschitz, expressivity.capacity], ids=["lipschitz", "capacity"])
def test_a_wrong_width_in_a_traced_analysis_prints_no_traceback(analysis, capfd):
    """torch.fx's ShapeProp prints the traceback of a failing node to stderr before raising; the probe runs first."""
    with pytest.raises(DataError, match="cannot take the inputs"):
        analysis(_model(d=4), X)
    assert "Traceback" not in capfd.readouterr().err


_SEEDED = sorted(
    name for name, spec in load_all_analyses().items() if "seed" in inspect.signature(spec.function).parameters
)


@pytest.mark.parametrize("name", _SEEDED)
def test_every_seeded_analysis_refuses_a_nan_seed_by_its_own_name(name):
    """The registry checks the shared options (seed, progress, max_batch, parameter_names) before any work."""
    spec = load_all_analyses()[name]
    fixture = make_fixture(spec.fixture)
    first = fixture.problem() if spec.takes == "problem" else fixture.model
    args = (first,) if spec.takes != "model_inputs" else (first, fixture.inputs[:4])
    with pytest.raises(IPE, match=rf"^The 'seed' parameter of {name} must be an int >= 0. Got nan instead.$"):
        spec.function(*args, seed=float("nan"))


_FLAGGED = sorted(
    (name, flag)
    for name, spec in load_all_analyses().items()
    for flag, parameter in inspect.signature(spec.function).parameters.items()
    if isinstance(parameter.default, bool)
)


@pytest.mark.parametrize(("name", "flag"), _FLAGGED, ids=[f"{name}-{flag}" for name, flag in _FLAGGED])
def test_every_flag_of_every_analysis_refuses_a_non_bool(name, flag):
    """A flag given "no" was silently True; the registry refuses any non-bool, naming the analysis."""
    spec = load_all_analyses()[name]
    fixture = make_fixture(spec.fixture)
    first = fixture.problem() if spec.takes == "problem" else fixture.model
    args = (first,) if spec.takes != "model_inputs" else (first, fixture.inputs[:4])
    with pytest.raises(IPE, match=rf"^The '{flag}' parameter of {name} must be a bool. Got 'no' instead.$"):
        spec.function(*args, **{flag: "no"})
