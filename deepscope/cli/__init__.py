"""The ``deepscope`` command line: thin wrappers that parse, call the library and print.

Commands: ``demo``, ``train``, ``audit``, ``explain`` and one command per registered report section
(``deepscope curvature --model m.safetensors --data digits`` runs the model card and that section).

Every user mistake (a DeepscopeError, a bad option, a missing file) prints exactly one line
``error: <message>`` on stderr and exits with status 2; an unexpected internal failure prints
``error: internal error: ...`` and exits with 1 (``--debug`` shows the traceback and warnings).
Progress bars go to stderr; the paths of what was written go to stdout.
"""

from deepscope.cli import experiment as _experiment  # noqa: F401  (registers `deepscope experiment`)
from deepscope.cli import explain as _explain  # noqa: F401  (registers `deepscope explain` on the group)
from deepscope.cli import sweep as _sweep  # noqa: F401  (registers `deepscope sweep ...` on the group)
from deepscope.cli._app import cli, main

__all__ = ["cli", "main"]
