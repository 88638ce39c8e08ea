"""Ingest benchmark: `imaging.read_volume` against SimpleITK on the same CT, same run.

Generates a synthetic CT-like series (default 512 x 512 x 300, int16, uncompressed DICOM),
a zip of that folder and a .nii.gz of the same volume in a temporary directory, then reads
each input in a fresh subprocess per repeat (so peak RSS is per reader, not cumulative):

    ours   read_volume(folder) / read_volume(zip) / read_volume(nii.gz)
    sitk   ImageSeriesReader(GetGDCMSeriesFileNames(folder)) / the same after
           zipfile.extractall (SimpleITK cannot read a zip) / sitk.ReadImage(nii.gz)

Both sides end with a numpy array (SimpleITK via GetArrayFromImage). Reported: seconds
(best of --repeats), peak RSS (ru_maxrss of the reading process, max over repeats) and the
RSS right before the read (imports), plus CPU seconds (user + system, all threads: steadier
than wall time on a shared machine), as a table and as JSON (bench/results/ingest.json and
--out). Goal: ours no slower than 1.2x SimpleITK.

    python bench/ingest.py                      # full size
    python bench/ingest.py --slices 40 --size 128 --repeats 1   # a quick check
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time
import zipfile
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
DEFAULT_OUT = REPO / "bench" / "results" / "ingest.json"
GOAL_RATIO = 1.2
# (reader name, input kind, SimpleITK counterpart for the ratio)
CASES = [
    ("ours", "dicom_folder", "sitk:dicom_folder"),
    ("sitk", "dicom_folder", None),
    ("ours", "dicom_zip", "sitk:dicom_zip"),
    ("sitk", "dicom_zip", None),  # zipfile.extractall to a temp dir, then the series reader
    ("ours", "nifti_gz", "sitk:nifti_gz"),
    ("sitk", "nifti_gz", None),
]


# ---- synthetic data ---------------------------------------------------------------------------


def phantom_slice(size: int, z_frac: float) -> np.ndarray:
    """One CT-like axial slice in HU: air, body, lungs (shrinking towards the ends), spine."""
    yy, xx = np.mgrid[:size, :size] / size - 0.5  # (Y, X) in [-0.5, 0.5)
    hu = np.full((size, size), -1000.0, dtype=np.float32)
    hu[(xx / 0.42) ** 2 + (yy / 0.30) ** 2 < 1] = 40.0  # soft tissue
    lung = 0.16 * (1.0 - 0.5 * abs(z_frac - 0.5))
    for cx in (-0.17, 0.17):
        hu[((xx - cx) / lung) ** 2 + ((yy + 0.02) / (lung * 1.3)) ** 2 < 1] = -850.0
    hu[(xx**2 + (yy - 0.2) ** 2) < 0.035**2] = 700.0  # vertebra
    return hu


def make_volume(n_slices: int, size: int, seed: int = 0) -> np.ndarray:
    """(Z, Y, X) int16 HU with scanner-like noise (so the zip and gzip compress realistically)."""
    rng = np.random.default_rng(seed)
    volume = np.empty((n_slices, size, size), dtype=np.int16)
    for z in range(n_slices):
        noise = rng.integers(-20, 21, (size, size), dtype=np.int16)
        volume[z] = phantom_slice(size, z / max(1, n_slices - 1)).astype(np.int16) + noise
    return volume


def write_dicom_series(folder: Path, volume_hu: np.ndarray, spacing_mm_zyx=(1.0, 0.7, 0.7)) -> None:
    """Uncompressed explicit-VR little-endian CT slices, stored value = HU + 1024."""
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian, generate_uid

    folder.mkdir(parents=True, exist_ok=True)
    study, series, frame = generate_uid(), generate_uid(), generate_uid()
    n_slices, rows, cols = volume_hu.shape
    for z in range(n_slices):
        sop = generate_uid()
        ds = Dataset()
        ds.file_meta = FileMetaDataset()
        ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
        ds.file_meta.MediaStorageSOPClassUID = "1.2.840.10008.5.1.4.1.1.2"
        ds.file_meta.MediaStorageSOPInstanceUID = sop
        ds.SOPClassUID, ds.SOPInstanceUID = "1.2.840.10008.5.1.4.1.1.2", sop
        ds.StudyInstanceUID, ds.SeriesInstanceUID, ds.FrameOfReferenceUID = study, series, frame
        ds.Modality, ds.ImageType, ds.SeriesDescription = (
            "CT",
            ["ORIGINAL", "PRIMARY", "AXIAL"],
            "bench chest",
        )
        ds.PatientName, ds.PatientID = "Bench^Phantom", "BENCH"
        ds.InstanceNumber, ds.SeriesNumber = z + 1, 1
        ds.ImagePositionPatient = [
            -cols * spacing_mm_zyx[2] / 2,
            -rows * spacing_mm_zyx[1] / 2,
            z * spacing_mm_zyx[0],
        ]
        ds.ImageOrientationPatient = [1, 0, 0, 0, 1, 0]
        ds.PixelSpacing = [spacing_mm_zyx[1], spacing_mm_zyx[2]]
        ds.SliceThickness = spacing_mm_zyx[0]
        ds.Rows, ds.Columns = rows, cols
        ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
        ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 16, 15, 1
        ds.RescaleSlope, ds.RescaleIntercept, ds.RescaleType = 1, -1024, "HU"
        ds.PixelData = (volume_hu[z] + 1024).astype("<i2").tobytes()
        ds.save_as(folder / f"IM{z:05d}.dcm", enforce_file_format=True)


def write_inputs(workdir: Path, n_slices: int, size: int, needed: set[str]) -> dict[str, str]:
    import nibabel as nib

    volume = make_volume(n_slices, size)
    inputs = {}
    folder = workdir / "dicom"
    if needed & {"dicom_folder", "dicom_zip"}:
        write_dicom_series(folder, volume)
        inputs["dicom_folder"] = str(folder)
    if "dicom_zip" in needed:
        archive = workdir / "series.zip"
        with zipfile.ZipFile(archive, "w", compression=zipfile.ZIP_DEFLATED) as zf:
            for path in sorted(folder.iterdir()):
                zf.write(path, f"export/{path.name}")
        inputs["dicom_zip"] = str(archive)
    if "nifti_gz" in needed:
        nifti = workdir / "volume.nii.gz"
        # (Z, Y, X) HU -> NIfTI (i, j, k) = (x, y, z) with an LPS-equivalent RAS affine
        affine = np.diag([-0.7, -0.7, 1.0, 1.0])
        nib.save(nib.Nifti1Image(np.ascontiguousarray(volume.transpose(2, 1, 0)), affine), nifti)
        inputs["nifti_gz"] = str(nifti)
    return inputs


# ---- one measurement (runs in a fresh process) -------------------------------------------------


def _rss_mb() -> float:
    import psutil

    return psutil.Process().memory_info().rss / 2**20


def _cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)  # all threads of this process
    return usage.ru_utime + usage.ru_stime


def worker(reader: str, kind: str, path: str, profile: bool) -> dict:
    if reader == "ours":
        # A service has its readers imported already: time the read, not the first import.
        import nibabel  # noqa: F401
        import pydicom  # noqa: F401

        import imaging.archive  # noqa: F401
        import imaging.dicom  # noqa: F401
        import imaging.nifti  # noqa: F401
        import imaging.orientation  # noqa: F401
        from imaging.read import read_volume

        def read():
            return read_volume(path).hu

    else:
        import SimpleITK as sitk

        def read():
            if kind == "dicom_folder":
                return read_series(path)
            if kind == "dicom_zip":
                with tempfile.TemporaryDirectory() as tmp, zipfile.ZipFile(path) as zf:
                    zf.extractall(tmp)
                    return read_series(str(Path(tmp) / "export"))
            return sitk.GetArrayFromImage(sitk.ReadImage(path))

        def read_series(folder: str) -> np.ndarray:
            series = sitk.ImageSeriesReader()
            series.SetFileNames(series.GetGDCMSeriesFileNames(folder))
            return sitk.GetArrayFromImage(series.Execute())

    import numpy  # noqa: F401  (imported before the baseline RSS is taken, for both sides)

    baseline = _rss_mb()
    cpu_started = _cpu_seconds()
    if profile:
        import cProfile
        import pstats

        profiler = cProfile.Profile()
        started = time.perf_counter()
        array = profiler.runcall(read)
        seconds = time.perf_counter() - started
        pstats.Stats(profiler, stream=sys.stderr).sort_stats("cumulative").print_stats(25)
    else:
        started = time.perf_counter()
        array = read()
        seconds = time.perf_counter() - started
    cpu_seconds = _cpu_seconds() - cpu_started
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux
    return {
        "seconds": seconds,
        "cpu_seconds": cpu_seconds,
        "peak_rss_mb": peak_mb,
        "baseline_rss_mb": baseline,
        "shape": list(array.shape),
        "dtype": str(array.dtype),
    }


def run_once(reader: str, kind: str, path: str, profile: bool) -> dict:
    command = [sys.executable, __file__, "--worker", reader, kind, path]
    if profile:
        command.append("--profile")
    result = subprocess.run(command, capture_output=True, text=True, cwd=REPO)
    if result.returncode != 0:
        raise RuntimeError(f"{reader} on {kind} failed:\n{result.stderr[-3000:]}")
    if profile:
        print(result.stderr, file=sys.stderr)
    return json.loads(result.stdout.strip().splitlines()[-1])


def summarise(reader: str, kind: str, runs: list[dict]) -> dict:
    best = min(runs, key=lambda r: r["seconds"])
    return {
        "reader": reader,
        "input": kind,
        "seconds_best": best["seconds"],
        "seconds_all": [r["seconds"] for r in runs],
        "cpu_seconds_best": min(r["cpu_seconds"] for r in runs),
        "peak_rss_mb": max(r["peak_rss_mb"] for r in runs),
        "baseline_rss_mb": best["baseline_rss_mb"],
        "shape": best["shape"],
        "dtype": best["dtype"],
    }


# ---- driver ------------------------------------------------------------------------------------


def run(args: argparse.Namespace) -> dict:
    with tempfile.TemporaryDirectory(prefix="ctscribe-bench-", dir=args.workdir) as tmp:
        cases = [c for c in CASES if not args.inputs or c[1] in args.inputs]
        started = time.perf_counter()
        inputs = write_inputs(Path(tmp), args.slices, args.size, {kind for _, kind, _ in cases})
        generate_s = time.perf_counter() - started
        sizes = {k: _size_mb(Path(v)) for k, v in inputs.items()}
        # Repeats are interleaved (every case once, then again) so a busy spell on a shared
        # machine hits both readers rather than one of them.
        runs: list[list[dict]] = [[] for _ in cases]
        for repeat in range(args.repeats):
            for i, (reader, kind, _) in enumerate(cases):
                runs[i].append(run_once(reader, kind, inputs[kind], args.profile and reader == "ours"))
                print(
                    f"  #{repeat + 1} {reader:<4} {kind:<12} {runs[i][-1]['seconds']:.3f} s", file=sys.stderr
                )
        results = [summarise(reader, kind, r) for (reader, kind, _), r in zip(cases, runs, strict=True)]
    by_key = {f"{r['reader']}:{r['input']}": r for r in results}
    for (_, _, reference), result in zip(cases, results, strict=True):
        if reference in by_key:
            result["vs_sitk"] = reference
            result["ratio_seconds"] = result["seconds_best"] / by_key[reference]["seconds_best"]
            result["ratio_peak_rss"] = result["peak_rss_mb"] / by_key[reference]["peak_rss_mb"]
    return {
        "shape_zyx": [args.slices, args.size, args.size],
        "repeats": args.repeats,
        "goal_ratio": GOAL_RATIO,
        "input_mb": sizes,
        "generate_seconds": generate_s,
        "machine": {
            "python": platform.python_version(),
            "cpus": os.cpu_count(),
            "platform": platform.platform(),
        },
        "results": results,
    }


def _size_mb(path: Path) -> float:
    if path.is_dir():
        return sum(p.stat().st_size for p in path.iterdir()) / 2**20
    return path.stat().st_size / 2**20


def format_table(report: dict) -> str:
    z, y, x = report["shape_zyx"]
    lines = [
        f"ingest benchmark: {x}x{y}x{z} int16, best of {report['repeats']} (fresh process per run)",
        f"{'reader':<6} {'input':<13} {'seconds':>8} {'CPU s':>7} {'peak RSS MB':>12} {'base MB':>8} "
        f"{'x sitk (s)':>11} {'x sitk (RSS)':>13}",
    ]
    for r in report["results"]:
        ratio_s = f"{r['ratio_seconds']:.2f}" if "ratio_seconds" in r else "-"
        ratio_m = f"{r['ratio_peak_rss']:.2f}" if "ratio_peak_rss" in r else "-"
        lines.append(
            f"{r['reader']:<6} {r['input']:<13} {r['seconds_best']:>8.3f} {r['cpu_seconds_best']:>7.2f} "
            f"{r['peak_rss_mb']:>12.0f} "
            f"{r['baseline_rss_mb']:>8.0f} {ratio_s:>11} {ratio_m:>13}"
        )
    lines.append(f"inputs (MB): {', '.join(f'{k} {v:.0f}' for k, v in report['input_mb'].items())}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--slices", type=int, default=300, help="number of axial slices")
    parser.add_argument("--size", type=int, default=512, help="rows = columns per slice")
    parser.add_argument("--repeats", type=int, default=3, help="runs per reader; the best time is kept")
    parser.add_argument("--out", type=Path, help="also write the JSON here")
    parser.add_argument("--workdir", help="where the temporary inputs go (default: the system temp dir)")
    parser.add_argument(
        "--inputs",
        type=lambda text: text.split(","),
        help="only these inputs, comma separated: dicom_folder,dicom_zip,nifti_gz (default: all)",
    )
    parser.add_argument("--profile", action="store_true", help="cProfile our reader (to stderr)")
    parser.add_argument("--worker", nargs=3, metavar=("READER", "KIND", "PATH"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        print(json.dumps(worker(*args.worker, profile=args.profile)))
        return 0
    report = run(args)
    print(format_table(report))
    for path in {DEFAULT_OUT, args.out} - {None}:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(report, indent=2))
        print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    if str(REPO) not in sys.path:
        sys.path.insert(0, str(REPO))
    sys.exit(main())
