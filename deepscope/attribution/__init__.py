"""Attribution methods whose axioms are checked at run time (``deepscope.attribution``).

Every method has the call shape ``method(model, inputs, target=None, *, ...) -> Attribution``;
:data:`METHODS` maps each method's name to its function (the metrics and the leaderboard
iterate it).
"""

from deepscope.attribution._base import Attribution
from deepscope.attribution.axioms import CLAIMED_AXIOMS, AxiomReport, check_axioms
from deepscope.attribution.deeplift import deeplift
from deepscope.attribution.expected_gradients import expected_gradients, gradient_shap
from deepscope.attribution.grad_cam import grad_cam
from deepscope.attribution.input_x_gradient import input_x_gradient
from deepscope.attribution.integrated_gradients import integrated_gradients
from deepscope.attribution.ism import ism
from deepscope.attribution.lrp import lrp
from deepscope.attribution.occlusion import occlusion
from deepscope.attribution.saliency import saliency
from deepscope.attribution.shapley import shapley
from deepscope.attribution.smoothgrad import smoothgrad, vargrad

METHODS = {
    "saliency": saliency,
    "input_x_gradient": input_x_gradient,
    "integrated_gradients": integrated_gradients,
    "smoothgrad": smoothgrad,
    "vargrad": vargrad,
    "expected_gradients": expected_gradients,
    "gradient_shap": gradient_shap,
    "occlusion": occlusion,
    "shapley": shapley,
    "ism": ism,
    "grad_cam": grad_cam,
    "deeplift": deeplift,
    "lrp": lrp,
}

__all__ = [
    "Attribution",
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
]
