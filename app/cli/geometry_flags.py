"""`--resample-geometry` and `--on-*`: what a command does with geometry the model cannot take as is.

The same flags on every command that reads a CT (`inspect`, `report`, `vqa`), and the same
policy as `resample_geometry` over HTTP: by default non-uniform slice spacing, gantry tilt and
oblique orientation are refused with their error code; with `--resample-geometry` they are
resampled onto a regular grid (with a warning), as training reads its volumes, so a volume the
model was trained on is never refused at inference. A specific `--on-*` flag wins over it.
"""

from __future__ import annotations

import argparse

POLICIES = ("reject", "resample")


def add_geometry_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--resample-geometry",
        action="store_true",
        help="resample non-uniform spacing, gantry tilt and oblique orientation instead of refusing them",
    )
    parser.add_argument("--on-non-uniform", choices=POLICIES, help="policy for non-uniform/missing slices")
    parser.add_argument("--on-gantry-tilt", choices=POLICIES, help="policy for a tilted (sheared) stack")
    parser.add_argument("--on-oblique", choices=POLICIES, help="policy for oblique orientation")


def geometry_policies(args: argparse.Namespace) -> dict[str, str]:
    """`ReadOptions` fields for the flags."""
    default = "resample" if args.resample_geometry else "reject"
    return {
        "on_non_uniform": args.on_non_uniform or default,
        "on_gantry_tilt": args.on_gantry_tilt or default,
        "on_oblique": args.on_oblique or default,
    }
