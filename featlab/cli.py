"""The `featlab` command. Each subcommand is a thin wrapper over a library function that a
notebook can call too.

The run commands (train-model, train-sae, analyze, demo) are built from their settings
dataclasses in `featlab.runs` (`cli_command`): one source of defaults, help texts and checks.
Arguments are checked before torch is imported, so a typo is reported at once. A user's
mistake (`featlab.errors.UserError`) prints one line naming the problem and the fix in terms
of the flags, and exits 2 without a traceback (``featlab --debug ...`` shows it); a run
stopped by Ctrl-C / SIGTERM checkpoints and exits 130; a diverged training run exits 1.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import typer

from featlab.app.server import DEFAULT_THREADS
from featlab.errors import Interrupted, TrainingDiverged, UserError
from featlab.runs.analyze import AnalyzeRunConfig
from featlab.runs.demo import DemoConfig
from featlab.runs.model import MQARModelConfig
from featlab.runs.options import cli_command
from featlab.runs.sae import SAERunConfig
from featlab.runs.text_model import TextModelConfig

app = typer.Typer(
    name="featlab",
    help="Hooked hybrid models, sparse autoencoders, probes, circuits and a feature browser.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
bench_app = typer.Typer(help="Benchmarks (scripts that print tables; never unit tests).")
app.add_typer(bench_app, name="bench")


@app.callback()
def _root(
    debug: bool = typer.Option(False, "--debug", help="Show the traceback of a user error too "
                               "(also FEATLAB_DEBUG=1; may come anywhere on the line)."),
) -> None:
    """Hooked hybrid models, sparse autoencoders, probes, circuits and a feature browser."""


# -- runs (train-model, train-lm, train-sae, analyze, demo) ---------------------------------
def _train_model(config: MQARModelConfig) -> None:
    from featlab.runs.model import train_mqar_model

    run = train_mqar_model(config)
    typer.echo(run.table.to_string(index=False))
    how = {"done": " (a finished run, loaded)", "resume": " (resumed)", "new": ""}[run.status]
    typer.echo(f"model saved in {run.out}{how}")


def _train_lm(config: TextModelConfig) -> None:
    from featlab.runs.text_model import train_text_model

    run = train_text_model(config)
    for key, value in run.metrics.items():
        typer.echo(f"{key:>22}: {value:.4g}" if isinstance(value, float) else
                   f"{key:>22}: {value}")
    how = {"done": " (a finished run, loaded)", "resume": " (resumed)", "new": ""}[run.status]
    typer.echo(f"model and tokenizer saved in {run.out}{how}")


def _train_sae(config: SAERunConfig) -> None:
    from featlab.runs.sae import train_sae_run

    run = train_sae_run(config)
    for key in ("fvu", "l0", "dead_frac", "ce_loss_recovered", "kl_sae"):
        if run.metrics.get(key) is not None:
            typer.echo(f"{key:>18}: {run.metrics[key]:.4g}")
    if run.metrics.get("ce_positions") == "task labels":
        typer.echo("(CE scored at the task's labelled positions)")
    how = " (a finished run, loaded)" if run.status == "done" else ""
    typer.echo(f"tokens from {run.token_source}; SAE saved in {run.out / 'sae'}{how}")


def _analyze(config: AnalyzeRunConfig) -> None:
    from featlab.runs.analyze import analyze_run

    rows = analyze_run(config)
    cols = ["sae_id", "hook", "d_sae", "n_tokens", "l0", "fvu", "dead_frac"]
    typer.echo(rows[cols].to_string(index=False))
    typer.echo(f"store: {config.store}")


def _demo(config: DemoConfig) -> None:
    from featlab.runs.demo import run_demo

    result = run_demo(config)
    if not config.serve:
        typer.echo(result.report())
        typer.echo(f"serve it with: featlab app --store {result.store}")


cli_command(app, "train-model", MQARModelConfig, _train_model)
cli_command(app, "train-lm", TextModelConfig, _train_lm)
cli_command(app, "train-sae", SAERunConfig, _train_sae)
cli_command(app, "analyze", AnalyzeRunConfig, _analyze)
cli_command(app, "demo", DemoConfig, _demo)


# -- app -------------------------------------------------------------------------------------
@app.command("app")
def app_cmd(
    store: Path = typer.Option(..., help="Feature store directory (from `featlab analyze`)."),
    host: str = typer.Option("127.0.0.1", help="Interface to bind (localhost by default)."),
    port: int = typer.Option(8050, help="Port to serve on."),
    threads: int = typer.Option(DEFAULT_THREADS, help="Server threads (requests served at "
                                "once)."),
    root: Path = typer.Option(None, help="Refuse stores outside this directory."),
    model: Path = typer.Option(None, help="Model directory for the prompt view."),
    sae: list[str] = typer.Option([], help="SAE_ID=DIR for the prompt view; repeatable."),
) -> None:
    """Serve the feature browser over STORE (open the printed URL)."""
    if not 0 < port < 65536:
        raise UserError(f"{{opt:port}} must be in 1..65535, got {port}")
    if threads < 1:
        raise UserError(f"{{opt:threads}} must be >= 1, got {threads}")
    sae_paths = {}
    for item in sae:
        sae_id, sep, path = item.partition("=")
        if not sep or not sae_id or not path:
            raise UserError(f"{{opt:sae}} expects SAE_ID=DIR, got {item!r}")
        sae_paths[sae_id] = Path(path)
    from featlab.app import serve
    from featlab.runs.checks import user_errors

    with user_errors("store"):
        serve(store, host=host, port=port, root=root, model=model, saes=sae_paths,
              threads=threads)


# -- probes and complexity (probe, v-information) --------------------------------------------
def _load_npy(path: Path, what: str):  # noqa: ANN202 - numpy stays a lazy import
    """A NumPy file named by positional argument `what`, or a UserError saying why not."""
    if not path.is_file():
        raise UserError(f"{what} {path}: no such file; give a .npy (or .npz) file")
    import numpy as np

    try:
        return np.load(path, allow_pickle=False)
    except (OSError, ValueError) as err:
        raise UserError(f"{what} {path} is not a readable NumPy file ({err})") from None


@app.command("v-information")
def v_information_cmd(
    x: Path = typer.Argument(..., help="Inputs [n, ...] as .npy."),
    y: Path = typer.Argument(..., help="Target [n] as .npy."),
    family: str = typer.Option("gaussian", help="gaussian (real targets) or logistic (labels)."),
    units: str = typer.Option("auto", help="auto (gaussian: nats; logistic: bits), bits, nats."),
    test_size: float = typer.Option(0.25, help="Held-out fraction."),
    seed: int = typer.Option(0, help="Seed of the train/test split."),
) -> None:
    """Held-out V-information I_V(X -> Y), printed as JSON with its parts."""
    import json

    xs, ys = _load_npy(x, "X"), _load_npy(y, "Y")
    from featlab.complexity import v_information_details
    from featlab.runs.checks import user_errors

    with user_errors():
        vi = v_information_details(xs, ys, family, test_size=test_size, seed=seed, units=units)
    typer.echo(json.dumps(vi.as_dict(), indent=2))


@app.command("probe")
def probe_cmd(
    acts: Path = typer.Argument(..., help="Activations as .npz, one array [n, ...] per layer."),
    target: Path = typer.Argument(..., help="Target [n] as .npy."),
    kind: str = typer.Option("logistic", help="logistic, linear, ridge, mlp, mlp_regression."),
    complexity: bool = typer.Option(False, help="Also print K over the layers (Gaussian I_V)."),
    seed: int = typer.Option(0, help="Seed of the train/test split."),
) -> None:
    """Fit one probe per layer and print held-out scores (and optionally K)."""
    with _load_npy(acts, "ACTS") as f:
        layers = {k: f[k] for k in f.files}
    z = _load_npy(target, "TARGET")
    from featlab.probes import probe_layers
    from featlab.runs.checks import user_errors

    with user_errors():
        typer.echo(probe_layers(layers, z, kind=kind, seed=seed).to_string(index=False))
        if complexity:
            from featlab.complexity import feature_complexity

            typer.echo(f"K = {feature_complexity(layers, z, seed=seed):.4f}")


@app.command("sae-info")
def sae_info_cmd(
    path: Path = typer.Argument(..., help="an SAE directory (featlab's or SAELens's)"),
) -> None:
    """Print what an SAE directory holds: kind, shapes, hook, SAELens architecture, density."""
    import json

    if not (path / "cfg.json").is_file():
        what = "does not exist" if not path.exists() else "has no cfg.json"
        raise UserError(f"PATH {path} {what}; give an SAE directory (featlab's or SAELens's)")
    from featlab.runs.checks import user_errors
    from featlab.sae.io import describe_sae

    with user_errors():
        typer.echo(json.dumps(describe_sae(path), indent=2))


# -- benchmarks --------------------------------------------------------------------------------
@bench_app.command("mixers")
def bench_mixers_cmd(
    lengths: str = typer.Option("64,128,256,512,1024", help="Comma-separated lengths."),
    batch: int = typer.Option(4, help="Sequences per call."),
    heads: int = typer.Option(2, help="Heads."),
    d: int = typer.Option(32, help="Key and value width per head."),
    chunk_size: int = typer.Option(16, help="Chunk size of the chunked form."),
    repeats: int = typer.Option(5, help="Timed forward+backward runs per cell (median)."),
    seed: int = typer.Option(0, help="Seed of the random inputs."),
) -> None:
    """Time chunked vs recurrent forms of the gla / delta_rule / ssd ops (forward+backward)."""
    try:
        sizes = [int(x) for x in lengths.split(",") if x.strip()]
    except ValueError:
        raise UserError(f"{{opt:lengths}} must be comma-separated integers, got {lengths!r}") \
            from None
    from featlab.models.ops.benchmark import bench_ops

    table = bench_ops(lengths=sizes, batch=batch, heads=heads, d=d, chunk_size=chunk_size,
                      repeats=repeats, seed=seed)
    typer.echo(table.to_string(index=False))


@bench_app.command("kernels")
def bench_kernels_cmd(
    quick: bool = typer.Option(False, help="One grid point on a GPU; 2 timed steps on CPU."),
    seed: int = typer.Option(0, help="Seed of the random inputs."),
    out: Path = typer.Option(None, help="Also write kernels.csv/.md/.html/.png here."),
    dtype: str = typer.Option("bfloat16", help="Activation and weight dtype on CUDA."),
    repeats: int = typer.Option(10, help="Timed steps per cell (median)."),
    compile_on_cpu: bool = typer.Option(False, help="Also time torch.compile on CPU (slow)."),
) -> None:
    """Time one TopK-SAE step (fwd+bwd): featlab kernels vs eager and compiled PyTorch."""
    from featlab.kernels.bench import (
        bench_kernels,
        header,
        make_config,
        summary_columns,
        write_results,
    )

    overrides = {"seed": seed, "dtype": dtype, "compile_on_cpu": compile_on_cpu}
    if not quick:
        overrides["repeats"] = repeats
    df = bench_kernels(make_config(quick, **overrides))
    typer.echo(header(df))
    typer.echo(summary_columns(df).to_string(index=False, float_format=lambda v: f"{v:.3g}"))
    if out is not None:
        for path in write_results(df, out):
            typer.echo(f"wrote {path}")


# -- the entry point ----------------------------------------------------------------------------
def run(argv: list[str] | None = None) -> int:
    """Run the command line on `argv` (default: sys.argv[1:]); returns the exit status."""
    # typer >= 0.29 vendors click; find its ClickException through a class typer exports.
    click_error = next(c for c in typer.BadParameter.__mro__ if c.__name__ == "ClickException")
    args = list(sys.argv[1:] if argv is None else argv)
    debug = os.environ.get("FEATLAB_DEBUG", "") not in ("", "0")
    if "--debug" in args:
        debug = True
        args = [a for a in args if a != "--debug"]
    name = "featlab " + next((a for a in args if not a.startswith("-")), "").strip()
    try:
        result = typer.main.get_command(app).main(args=args, prog_name="featlab",
                                                  standalone_mode=False)
        return result if isinstance(result, int) else 0
    except typer.Exit as stop:
        return stop.exit_code
    except click_error as err:  # a flag typer itself rejected: its usage message
        err.show()
        return err.exit_code
    except (typer.Abort, KeyboardInterrupt):
        print(f"{name}: interrupted", file=sys.stderr)
        return 130
    except Interrupted as err:
        where = f" ({err.checkpoint})" if err.checkpoint else ""
        print(f"{name}: interrupted by {err.signal_name} after {err.step} of {err.total}; "
              f"the checkpoint is saved{where}. Run the same command again to resume.",
              file=sys.stderr)
        return 130
    except UserError as err:
        if debug:
            raise
        print(f"{name}: error: {err.render('cli')}", file=sys.stderr)
        return 1 if isinstance(err, TrainingDiverged) else 2


def main() -> None:
    sys.exit(run())


if __name__ == "__main__":
    main()
