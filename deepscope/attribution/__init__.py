"""Attribution methods whose axioms are checked at run time (``deepscope.attribution``).

Every method has the call shape ``method(model, inputs, target=None, *, ...) -> Attribution`` and
is registered next to its function with :func:`~deepscope.attribution._registry.attribution_method`
(name, aliases, claimed axioms, report defaults). :data:`METHODS` (name -> function, which the
metrics and the leaderboard iterate) and :data:`CLAIMED_AXIOMS` are views of that registry.
"""

# ruff: noqa: I001 -- the import order below is the registration order, which is the order of METHODS
from deepscope.attribution._base import Attribution
from deepscope.attribution._multi_input import MultiInputAttribution
from deepscope.attribution._registry import RegistryView
from deepscope.attribution.saliency import saliency
from deepscope.attribution.input_x_gradient import input_x_gradient
from deepscope.attribution.integrated_gradients import integrated_gradients
from deepscope.attribution.smoothgrad import smoothgrad, vargrad
from deepscope.attribution.expected_gradients import expected_gradients, gradient_shap
from deepscope.attribution.occlusion import occlusion
from deepscope.attribution.shapley import shapley
from deepscope.attribution.ism import ism
from deepscope.attribution.grad_cam import grad_cam
from deepscope.attribution.deeplift import deeplift
from deepscope.attribution.lrp import lrp
from deepscope.attribution.layer_integrated_gradients import layer_integrated_gradients
from deepscope.attribution.layer_gradient_x_activation import layer_gradient_x_activation
from deepscope.attribution.attn_lrp import attn_lrp
from deepscope.attribution.axioms import CLAIMED_AXIOMS, AxiomReport, check_axioms
from deepscope.attribution.deep_lift_shap import deep_lift_shap
from deepscope.attribution.logos import attribution_logo
from deepscope.attribution.seqlets import MotifRecovery, Seqlets, call_seqlets, motif_recovery

METHODS = RegistryView("function")
"""name -> function of every registered method, in registration order (a live view of the registry)."""

__all__ = [
    "Attribution",
    "MultiInputAttribution",
    "METHODS",
    "check_axioms",
    "AxiomReport",
    "CLAIMED_AXIOMS",
    "saliency",
    "input_x_gradient",
    "integrated_gradients",
    "smoothgrad",
    "vargrad",
    "expected_gradients",
    "gradient_shap",
    "occlusion",
    "shapley",
    "ism",
    "grad_cam",
    "deeplift",
    "lrp",
    "layer_integrated_gradients",
    "layer_gradient_x_activation",
    "attn_lrp",
    "deep_lift_shap",
    "attribution_logo",
    "call_seqlets",
    "motif_recovery",
    "Seqlets",
    "MotifRecovery",
]
