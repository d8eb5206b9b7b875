"""Representations (``deepscope.attribution.representation``): what do the layers encode?

:func:`linear_probes` (label decodability by depth), :func:`cka` / :func:`layer_cka` /
:func:`model_cka` (similarity of representations; Kornblith et al. 2019) and :func:`tcav`
(concept sensitivity with a significance test; Kim et al. 2018).
"""

from deepscope.attribution.representation.cka import CKAMatrix, cka, layer_cka, model_cka
from deepscope.attribution.representation.probes import ProbeAccuracies, linear_probes
from deepscope.attribution.representation.tcav import TCAVResult, layer_gradients, tcav

__all__ = [
    "CKAMatrix",
    "ProbeAccuracies",
    "TCAVResult",
    "cka",
    "layer_cka",
    "model_cka",
    "linear_probes",
    "tcav",
    "layer_gradients",
]
