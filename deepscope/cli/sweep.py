"""``deepscope sweep run|status|report|list``: populations of models from the command line.

    deepscope sweep run builtin:generalization-small --store gen.db --workers 2
    deepscope sweep status gen.db
    deepscope sweep report gen.db --out gen-report

``run`` resumes: rerunning it skips finished trials (``--retry-failed`` also reruns failed ones);
``--executor ray`` sends trials to Ray (``--address auto`` or ``ray://host:port`` for a cluster,
none for a local instance). The library does the work (:mod:`deepscope.sweep`); this file parses
and prints.
"""

from __future__ import annotations

from pathlib import Path

import click

from deepscope.cli._app import _CONTEXT, cli

__all__ = ["sweep"]


@cli.group(context_settings=_CONTEXT)
def sweep() -> None:
    """Train and measure populations of models (run, status, report, list)."""


@sweep.command("run", context_settings=_CONTEXT)
@click.argument("spec")
@click.option("--store", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="SQLite store (default: <spec name>.db in the current folder).")  # fmt: skip
@click.option("--executor", type=click.Choice(["local", "ray"]), default="local", show_default=True)
@click.option("--workers", type=click.IntRange(min=1), default=1, show_default=True,
              help="Local worker processes (workers x execution.threads must fit the cores).")  # fmt: skip
@click.option("--address", default=None, help="Ray cluster address: auto or ray://host:port (default: a local Ray).")
@click.option("--gpus", type=click.FloatRange(min=0), default=0.0, show_default=True, help="GPUs per Ray task.")
@click.option("--retry-failed", is_flag=True, help="Rerun failed trials too.")
@click.option("--extend", is_flag=True, help="Accept a spec that adds grid points to the stored sweep.")
def run_command(
    spec: str,
    store: Path | None,
    executor: str,
    workers: int,
    address: str | None,
    gpus: float,
    retry_failed: bool,
    extend: bool,
) -> None:
    """Run (or resume) the sweep SPEC: a .toml/.yaml file or builtin:NAME (see `deepscope sweep list`)."""
    from deepscope.errors import DeepscopeError
    from deepscope.sweep import resolve_spec, run

    if executor != "ray" and (address is not None or gpus):
        raise DeepscopeError("--address and --gpus apply to --executor ray only.")
    if executor == "ray" and workers != 1:
        raise DeepscopeError("--workers applies to the local executor; Ray schedules by the cluster's CPUs.")
    resolved = resolve_spec(spec)
    store = store or Path(f"{resolved['name']}.db")
    status = run(
        resolved, store, executor=executor, workers=workers, address=address, gpus=gpus,
        retry_failed=retry_failed, extend=extend,
    )  # fmt: skip
    click.echo(status.summary())
    click.echo(f"store: {store}")
    for key, error in status.failures[:5]:
        click.echo(f"failed {key}: {error}")


@sweep.command("status", context_settings=_CONTEXT)
@click.argument("store", type=click.Path(dir_okay=False, path_type=Path))
def status_command(store: Path) -> None:
    """Trials done / running / failed / pending, and an ETA."""
    from deepscope.sweep import status

    result = status(store)
    click.echo(result.summary())
    for key, error in result.failures:
        click.echo(f"failed {key}: {error}")


@sweep.command("report", context_settings=_CONTEXT)
@click.argument("store", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--out", type=click.Path(file_okay=False, path_type=Path), required=True, help="Output directory.")
@click.option("--overwrite", is_flag=True, help="Replace report files in --out that deepscope did not write.")
@click.option("--bootstrap", type=click.IntRange(min=0), default=200, show_default=True,
              help="Resamples of the models for the intervals of tau and Psi (0: none, fastest).")  # fmt: skip
def report_command(store: Path, out: Path, overwrite: bool, bootstrap: int) -> None:
    """Write the sweep report (HTML + JSON): spec, progress, distributions, measure rankings."""
    from deepscope.sweep.report import write_sweep_report

    paths = write_sweep_report(store, out, overwrite=overwrite, bootstrap=bootstrap)
    for path in paths:
        click.echo(str(path))


@sweep.command("list", context_settings=_CONTEXT)
def list_command() -> None:
    """The built-in sweep specs (use as builtin:NAME)."""
    from deepscope.sweep.studies import BUILTIN_STUDIES, builtin_path

    for name in BUILTIN_STUDIES:
        click.echo(f"builtin:{name}  ({builtin_path(name)})")
