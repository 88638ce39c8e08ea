"""`ctscribe synth OUT --n N [--seed S] [--dicom]`: a synthetic chest-phantom dataset (CT-RATE layout)."""

from __future__ import annotations

import argparse
import json
import sys

from ctscribe.errors import ErrorCode, ImagingError


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "synth",
        help="write a synthetic chest CT phantom dataset in the CT-RATE layout",
        description="Procedural chest CT phantoms with findings, CT-RATE style reports, 18 labels and "
        "questions. Re-running with the same arguments resumes (finished volumes are kept).",
    )
    p.add_argument("out", metavar="OUT", help="output folder (created)")
    p.add_argument("--n", type=int, required=True, help="number of cases (patient ids 1..N)")
    p.add_argument("--seed", type=int, default=0, help="dataset seed (same seed -> identical files)")
    p.add_argument("--split", choices=("valid", "train"), default="valid", help="CT-RATE split name")
    p.add_argument(
        "--size",
        default=None,
        metavar="ZxYxX",
        help="voxel grid, e.g. 32x64x64; spacing is scaled to keep the 320x320x256 mm field of view "
        "(default 64x128x128 at 4.0/2.5/2.5 mm)",
    )
    p.add_argument(
        "--dicom", action="store_true", help="also write a DICOM series per volume (<name>_dicom/)"
    )
    p.add_argument("--no-nifti", action="store_true", help="with --dicom: write only the DICOM series")
    p.add_argument("--contrast", action="store_true", help="contrast-enhanced blood (~250 HU)")
    p.add_argument("--json", action="store_true", help="print the summary as JSON")
    p.set_defaults(func=run)


def parse_size(text: str) -> tuple[int, int, int]:
    parts = text.lower().replace(",", "x").split("x")
    try:
        shape = tuple(int(v) for v in parts)
    except ValueError:
        shape = ()
    if len(shape) != 3 or min(shape) < 8 or max(shape) > 1024:
        raise ImagingError(
            ErrorCode.INVALID_REQUEST, f"--size must be ZxYxX with sizes 8..1024, got {text!r}"
        )
    return shape  # type: ignore[return-value]


def run(args: argparse.Namespace) -> int:
    from imaging.phantom.config import PhantomConfig
    from imaging.phantom.dataset import write_dataset

    if args.no_nifti and not args.dicom:
        raise ImagingError(ErrorCode.INVALID_REQUEST, "--no-nifti needs --dicom (nothing would be written)")
    if args.size:
        cfg = PhantomConfig.with_shape(parse_size(args.size), contrast_enhanced=args.contrast)
    else:
        cfg = PhantomConfig(contrast_enhanced=args.contrast)

    def progress(done: int, total: int) -> None:
        if not args.json and sys.stderr.isatty():
            print(f"\rcase {done}/{total}", end="" if done < total else "\n", file=sys.stderr, flush=True)

    summary = write_dataset(
        args.out,
        args.n,
        seed=args.seed,
        split=args.split,
        config=cfg,
        nifti=not args.no_nifti,
        dicom=args.dicom,
        progress=progress,
    )
    if args.json:
        print(json.dumps(summary.__dict__))
    else:
        print(
            f"wrote {summary.n_cases} {summary.split} cases to {summary.out_dir} "
            f"({summary.n_rendered} rendered, {summary.n_skipped} already present) in {summary.seconds:.1f} s"
        )
    return 0
