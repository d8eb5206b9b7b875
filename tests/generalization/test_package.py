"""The generalization package's names: ``measures`` is one thing (the function).

The implementation lives in ``deepscope.generalization._measures``; the old module paths
``deepscope.generalization.measures.<module>`` are deprecated aliases (one release) of the very same
module objects, so nothing runs twice and no analysis is registered twice.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import deepscope.generalization as generalization

PACKAGE = Path(generalization.__file__).parent


def test_measures_is_the_function_and_the_implementation_is_private():
    from deepscope.generalization import MeasuresResult, MeasureValue, fit_power_law, measures

    assert callable(measures) and measures is generalization.measures
    assert measures.__module__ == "deepscope.generalization._measures.table"
    assert not (PACKAGE / "measures").exists()  # no subpackage under the function's name
    assert (PACKAGE / "_measures" / "table.py").is_file()
    assert {"measures", "MeasuresResult", "MeasureValue", "fit_power_law", "LayerSpectrum"} <= set(
        generalization.__all__
    )
    assert MeasuresResult.__module__.endswith("_measures.table") and MeasureValue and fit_power_law


def test_old_module_paths_resolve_to_the_same_modules_in_a_fresh_interpreter():
    code = """
        from deepscope.generalization.measures.spectral import fit_power_law
        from deepscope.generalization.measures import MeasuresResult
        import deepscope.generalization._measures.spectral as spectral
        import deepscope.generalization as generalization
        import sys
        assert fit_power_law is spectral.fit_power_law
        assert MeasuresResult is generalization.MeasuresResult
        assert callable(generalization.measures), "the attribute stays the function"
        objects = {}
        for name, module in list(sys.modules.items()):
            if name.startswith("deepscope.generalization.") and getattr(module, "__file__", None):
                objects.setdefault(module.__file__, set()).add(id(module))
        aliases = [n for n in sys.modules if n.startswith("deepscope.generalization.measures.")]
        same = all(sys.modules[n] is sys.modules[n.replace(".measures.", "._measures.", 1)] for n in aliases)
        print(max(len(ids) for ids in objects.values()), len(aliases) > 0 and same)
    """
    done = subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    # every file is one module object (nothing executed twice); every alias is the _measures module itself
    assert done.stdout.split() == ["1", "True"]
