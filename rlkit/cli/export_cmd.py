"""``rlkit export``: a trained Q-network as an ONNX or TorchScript file for deployment, with a JSON beside it."""

from __future__ import annotations

from enum import Enum
from pathlib import Path
from typing import Annotated, Any, Optional

import typer

from rlkit.cli.common import EnvArg, ModelOpt, SourceArg, one_line_errors, out, prose


class ExportFormat(str, Enum):
    onnx = "onnx"
    torchscript = "torchscript"


@one_line_errors
def export(
    run_dir: SourceArg,
    env: EnvArg = None,
    model: ModelOpt = "auto",
    fmt: Annotated[
        Optional[ExportFormat],
        typer.Option(
            "--format",
            "-f",
            help="onnx (onnxruntime, any language) or torchscript (torch.jit.load). "
            "Default: from --out's suffix, else onnx.",
        ),
    ] = None,
    out_path: Annotated[
        Optional[Path],
        typer.Option(
            "--out", "-o", help="Output .onnx, or .pt/.ts for TorchScript (default RUN_DIR/export/<model>.onnx|.pt)."
        ),
    ] = None,
    check: Annotated[
        int, typer.Option(help="Observations recorded from the env on which the export must agree with the model.")
    ] = 1000,
    force: Annotated[bool, typer.Option("--force", help="Overwrite an existing export and its JSON.")] = False,
) -> None:
    """Export the greedy policy: a file mapping a batch of observations to Q-values and greedy actions.

    Runs without rlkit or SB3 (onnxruntime + numpy, or torch for TorchScript); a JSON beside it tells the input shape and dtype, the preprocessing, the action meanings and where it came from. Checked against the model before it is written. See docs/deploy.md.
    """
    from rlkit.analysis.export import export_model

    result = export_model(
        run_dir,
        env_name=env,
        model_name=model,
        fmt=None if fmt is None else fmt.value,
        out=out_path,
        force=force,
        check_observations=check,
    )
    meta = result.meta
    shape = "x".join("N" if d is None else str(d) for d in meta["input"]["shape"])
    agreement = result.agreement
    out.print(f"wrote {result.path} ({result.fmt}, {result.size / 1024:.1f} KiB) and {result.meta_path.name}")
    prose(
        f"  model {meta['source']['model']} at step {meta['source']['step']} ({_head(meta['source'])}); "
        f"input '{meta['input']['name']}' {shape} {meta['input']['dtype']}; outputs {', '.join(meta['output_names'])}"
    )
    prose(
        f"  checked on {agreement.observations} observations from {meta['env']['id']}: "
        f"greedy actions equal {agreement.actions_equal:.2%}, max |dQ| {agreement.max_abs_dq:.2g}"
        + (f" ({agreement.near_ties} near-ties)" if agreement.near_ties else "")
    )


def _head(source: dict[str, Any]) -> str:
    """``dqn``, ``dqn, c51 head, dueling, noisy``, ``qrdqn``...: what the exported file was made from."""
    parts = [str(source["algo"])]
    if source.get("distribution") == "c51":
        parts.append("c51 head")
    parts += [name for name in ("dueling", "noisy") if source.get(name)]
    return ", ".join(parts)
