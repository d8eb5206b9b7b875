"""Attribution methods whose axioms are checked at run time (``deepscope.attribution``).

Every method has the call shape ``method(model, inputs, target=None, *, ...) -> Attribution``;
:data:`METHODS` maps each method's name to its function (the metrics and the leaderboard
iterate it).
"""

from deepscope.attribution._base import Attribution
from deepscope.attribution.input_x_gradient import input_x_gradient
from deepscope.attribution.integrated_gradients import integrated_gradients
from deepscope.attribution.saliency import saliency

METHODS = {
    "saliency": saliency,
    "input_x_gradient": input_x_gradient,
    "integrated_gradients": integrated_gradients,
}

__all__ = ["Attribution", "METHODS", "saliency", "input_x_gradient", "integrated_gradients"]
