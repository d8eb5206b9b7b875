"""``deepscope experiment NAME|all --out DIR``: the theory gallery from the command line.

    deepscope experiment double_descent --out gallery            # small budget, this machine
    deepscope experiment all --out gallery                        # every experiment + index.html
    deepscope experiment edge_of_stability --budget full --executor ray --address auto --out gallery

``--set PATH=VALUE`` changes the experiment's sweep spec (VALUE is JSON, e.g. ``--set seeds=[0,1,2,3]``
or ``--set search.grid.model.width=[8,16,32]``); settings that make the experiment meaningless are
refused. An interrupted experiment resumes from its store in DIR.
"""

from __future__ import annotations

import json
from pathlib import Path

import click

from deepscope.cli._app import _CONTEXT, cli

__all__ = ["experiment"]


def _parse_sets(values: tuple[str, ...]) -> dict[str, object]:
    from deepscope.errors import DeepscopeError

    overrides: dict[str, object] = {}
    for item in values:
        path, sep, raw = item.partition("=")
        if not sep or not path:
            raise DeepscopeError(f"--set takes PATH=VALUE (e.g. seeds=[0,1,2]). Got {item!r}.")
        try:
            overrides[path.strip()] = json.loads(raw)
        except json.JSONDecodeError:
            overrides[path.strip()] = raw  # a bare word is a string
    return overrides


@cli.command(context_settings=_CONTEXT)
@click.argument("name")
@click.option("--out", type=click.Path(file_okay=False, path_type=Path), required=True, help="Output directory.")
@click.option("--budget", type=click.Choice(["small", "full"]), default="small", show_default=True)
@click.option("--executor", type=click.Choice(["local", "ray"]), default="local", show_default=True)
@click.option("--workers", type=click.IntRange(min=1), default=1, show_default=True, help="Local worker processes.")
@click.option("--address", default=None, help="Ray cluster address (auto, ray://host:port); default a local Ray.")
@click.option("--set", "sets", multiple=True, metavar="PATH=VALUE", help="Change the experiment's spec (JSON value).")
def experiment(
    name: str, out: Path, budget: str, executor: str, workers: int, address: str | None, sets: tuple[str, ...]
) -> None:
    """Reproduce a phenomenon of deep-learning theory (NAME, or all) and write its page with a verdict."""
    from deepscope.experiments import EXPERIMENTS, run_experiment, run_gallery

    overrides = _parse_sets(sets)
    options = {"executor": executor, "workers": workers, "address": address}
    if name == "all":
        if overrides:
            from deepscope.errors import DeepscopeError

            raise DeepscopeError("--set applies to one experiment; run them one by one to change their specs.")
        for entry in run_gallery(out, budget=budget, **options):
            verdict = entry.get("verdict")
            word = (
                "not run"
                if verdict is None
                else {True: "held", False: "did not hold", None: "inconclusive"}[verdict["held"]]
            )
            click.echo(f"{entry['experiment']}: {word}")
        click.echo(str(out / "index.html"))
        return
    if name not in EXPERIMENTS:
        from deepscope.errors import invalid_parameter

        raise invalid_parameter("NAME", "deepscope experiment", "one of " + ", ".join(EXPERIMENTS) + " or all", name)
    payload = run_experiment(name, out, budget=budget, overrides=overrides, **options)
    verdict = payload["verdict"]
    word = {True: "held", False: "did not hold", None: "inconclusive"}[verdict["held"]]
    click.echo(f"{name}: the claim {word} ({verdict['detail']})")
    click.echo(str(out / f"{name}.html"))
