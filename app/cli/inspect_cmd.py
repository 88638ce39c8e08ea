"""`ctscribe inspect PATH`: read, validate and summarise a CT (DESIGN.md §3).

Prints a table, or with `--json` the summary document (`format, shape_zyx, spacing_mm_zyx,
origin_mm, orientation_in, hu, series, candidates, warnings`). Bad input exits 2 with one
`error: <code>: <message>` line (main.py maps `CtscribeError`); anything else a reader
throws is turned into `corrupt_file` inside `imaging.read_volume`.
"""

from __future__ import annotations

import argparse
import json

from app.cli.geometry_flags import add_geometry_arguments, geometry_policies


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "inspect",
        help="read, validate and summarise a CT (NIfTI, DICOM folder/zip, NRRD, MHA)",
        description=__doc__.splitlines()[0],
    )
    parser.add_argument("path", nargs="+", help="a file, a DICOM folder, a zip, or several DICOM files")
    parser.add_argument("--series", metavar="UID", help="DICOM SeriesInstanceUID (or its uid_hash) to read")
    parser.add_argument("--json", action="store_true", help="print the summary as JSON")
    parser.add_argument(
        "--series-description",
        action="store_true",
        help="show each DICOM series' SeriesDescription (free text that may hold names; off by default)",
    )
    add_geometry_arguments(parser)
    parser.add_argument("--min-slices", type=int, help="fewer slices than this along any axis is too_few_slices")
    parser.add_argument("--rescale-slope", type=float, help="override the NIfTI scl_slope")
    parser.add_argument("--rescale-intercept", type=float, help="override the NIfTI scl_inter (e.g. -1024)")
    parser.set_defaults(func=run)


def build_options(args: argparse.Namespace):
    """ReadOptions from the command line: `--resample-geometry` sets all three policies at once,
    a specific `--on-*` flag wins over it."""
    from imaging.options import ReadOptions

    fields = {
        "series_uid": args.series,
        "show_series_description": args.series_description,
        **geometry_policies(args),
        "rescale_slope": args.rescale_slope,
        "rescale_intercept": args.rescale_intercept,
    }
    if args.min_slices is not None:
        fields["min_slices"] = args.min_slices
    return ReadOptions(**fields)


def run(args: argparse.Namespace) -> int:
    from imaging.read import inspect_source

    source = args.path[0] if len(args.path) == 1 else args.path
    summary = inspect_source(source, build_options(args))
    if args.json:
        print(json.dumps(summary, indent=2))
    else:
        print(format_table(summary))
    return 0


def format_table(summary: dict) -> str:
    hu = summary["hu"]
    rows = [
        ("format", summary["format"]),
        ("shape (z, y, x)", " x ".join(str(n) for n in summary["shape_zyx"])),
        ("spacing mm (z, y, x)", ", ".join(f"{s:.3g}" for s in summary["spacing_mm_zyx"])),
        ("origin mm (LPS x, y, z)", ", ".join(f"{o:.1f}" for o in summary["origin_mm"])),
        ("orientation in", summary["orientation_in"]),
        ("HU min / max / mean", f"{hu['min']:.0f} / {hu['max']:.0f} / {hu['mean']:.1f}"),
        ("HU p1 / p99", f"{hu['p1']:.0f} / {hu['p99']:.0f}"),
    ]
    series = summary.get("series")
    if series:
        rows.append(("series", _series_line(series)))
    candidates = summary.get("candidates") or []
    for i, candidate in enumerate(candidates):
        rows.append(("candidates" if i == 0 else "", _series_line(candidate)))
    warnings = summary.get("warnings") or []
    for i, warning in enumerate(warnings):
        rows.append(("warnings" if i == 0 else "", warning))
    if not warnings:
        rows.append(("warnings", "none"))
    width = max(len(label) for label, _ in rows)
    return "\n".join(f"{label:<{width}}  {value}" for label, value in rows)


def _series_line(series: dict) -> str:
    line = f"{series['uid_hash']}  {series['modality']}  {series['n_slices']} slices"
    if "description" in series:  # only with --series-description
        line += f"  {series['description'] or '(no description)'}"
    return line
