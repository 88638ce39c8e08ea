"""One phantom case end to end: anatomy, findings, volume, report, labels and questions.

A case is fully determined by (seed, index, config). Its random streams are split with
`numpy.random.SeedSequence([seed, index])`: anatomy, findings, rendering and text each get
their own, so the text can be rebuilt without rendering (resumable dataset writing) and a
template change never alters a volume.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from ctscribe.labels import CTRATE_LABELS
from imaging.phantom.anatomy import AnatomyParams, sample_anatomy
from imaging.phantom.config import FINDING_KINDS, PhantomConfig
from imaging.phantom.findings import Finding, anatomy_for, sample_findings
from imaging.phantom.geometry import Grid
from imaging.volume import PHANTOM_SOURCE_HINT, Volume


@dataclass(frozen=True)
class CaseSpec:
    """Everything needed to render and describe a case, without the voxels."""

    seed: int
    index: int
    config: PhantomConfig
    anatomy: AnatomyParams
    findings: tuple[Finding, ...]

    @property
    def grid(self) -> Grid:
        return Grid(
            tuple(int(n) for n in self.config.shape_zyx), tuple(float(s) for s in self.config.spacing_mm_zyx)
        )

    def streams(self) -> dict[str, np.random.SeedSequence]:
        return case_streams(self.seed, self.index)

    @property
    def kinds(self) -> set[str]:
        return {f.kind for f in self.findings}

    def finding(self, kind: str) -> Finding | None:
        return next((f for f in self.findings if f.kind == kind), None)

    def labels(self) -> dict[str, int]:
        """The 18 CT-RATE labels: 1 for each drawn finding, 0 otherwise (and always for the
        five labels the phantom cannot draw)."""
        present = {f.label for f in self.findings}
        return {name: int(name in present) for name in CTRATE_LABELS}

    def without(self, *kinds: str) -> CaseSpec:
        """The same case with some findings removed (everything else identical)."""
        return CaseSpec(
            self.seed,
            self.index,
            self.config,
            self.anatomy,
            tuple(f for f in self.findings if f.kind not in kinds),
        )


@dataclass
class PhantomCase:
    spec: CaseSpec
    volume: Volume | None
    report: dict[str, str] = field(default_factory=dict)
    questions: list[dict] = field(default_factory=list)

    @property
    def findings(self) -> tuple[Finding, ...]:
        return self.spec.findings

    @property
    def labels(self) -> dict[str, int]:
        return self.spec.labels()


def case_streams(seed: int, index: int) -> dict[str, np.random.SeedSequence]:
    names = ("anatomy", "findings", "render", "report", "questions")
    return dict(zip(names, np.random.SeedSequence([int(seed), int(index)]).spawn(len(names)), strict=True))


def sample_case(
    seed: int, index: int = 0, config: PhantomConfig | None = None, force=(), exclude=()
) -> CaseSpec:
    """Draw a case's anatomy and findings; `force`/`exclude` pin finding kinds (tests, demos)."""
    cfg = config or PhantomConfig()
    streams = case_streams(seed, index)
    anatomy = sample_anatomy(np.random.default_rng(streams["anatomy"]), cfg.noise_sigma_hu)
    finding_rngs = [np.random.default_rng(s) for s in streams["findings"].spawn(len(FINDING_KINDS) + 1)]
    grid = Grid(tuple(int(n) for n in cfg.shape_zyx), tuple(float(s) for s in cfg.spacing_mm_zyx))
    findings = sample_findings(finding_rngs, anatomy, grid, cfg, force=force, exclude=exclude)
    return CaseSpec(int(seed), int(index), cfg, anatomy, findings)


def render_case(spec: CaseSpec) -> Volume:
    """The case's CT as a canonical `Volume` (float32 HU, LPS (z, y, x), slice 0 inferior)."""
    from imaging.phantom.render import render_hu

    grid = spec.grid
    hu = render_hu(
        grid, anatomy_for(spec.anatomy, spec.findings), spec.findings, spec.config, spec.streams()["render"]
    )
    return Volume(
        hu=hu,
        spacing_mm_zyx=grid.spacing_mm_zyx,
        origin_mm=grid.origin_mm_xyz,
        format="phantom",
        orientation_in="LPS",
        meta={
            "manufacturer": "ctscribe phantom",
            "source_hint": PHANTOM_SOURCE_HINT,
            "seed": spec.seed,
            "index": spec.index,
            "contrast_enhanced": spec.config.contrast_enhanced,
        },
    )


def describe_case(spec: CaseSpec) -> tuple[dict[str, str], list[dict]]:
    """(report sections, questions) of a case: pure text, no voxels."""
    from imaging.phantom.questions import make_questions
    from imaging.phantom.reports import make_report

    streams = spec.streams()
    report = make_report(spec, np.random.default_rng(streams["report"]))
    questions = make_questions(spec, np.random.default_rng(streams["questions"]))
    return report, questions


def generate_case(
    seed: int,
    index: int = 0,
    config: PhantomConfig | None = None,
    *,
    render: bool = True,
    force=(),
    exclude=(),
) -> PhantomCase:
    """One complete case. `render=False` skips the voxels (text and labels only)."""
    spec = sample_case(seed, index, config, force=force, exclude=exclude)
    report, questions = describe_case(spec)
    return PhantomCase(
        spec=spec, volume=render_case(spec) if render else None, report=report, questions=questions
    )
