"""The experiment registry: every experiment of the project, in one list.

The modelling, evaluation and ``msi_whole_specimen`` pipelines, the metric tables, the stale-table
hook and the ``full_scale`` pipeline all read :data:`EXPERIMENTS`; nothing else lists experiment
names. An experiment's parameters live under one root, ``<name>.{tiling,training,evaluation}``
(``conf/base/parameters_experiments.yml``); its Kedro namespace is its name, which the training
and evaluation nodes receive bound, so the YAML never repeats it.

Adding an experiment is one :class:`Experiment` here and one block in
``parameters_experiments.yml`` (``docs/experiments.md``).

No Kedro imports: the registry is library code, read by ``pipelines/``.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from enum import StrEnum

__all__ = [
    "EXPERIMENTS",
    "Experiment",
    "Pipeline",
    "Table",
    "Task",
    "TileSource",
    "by_name",
    "experiments",
]


class Task(StrEnum):
    """What an experiment translates."""

    MRI_TO_HISTOLOGY = "mri_to_histology"  # paper 000 (and paper 003's U-Net baseline on it)
    MRI_TO_MRI = "mri_to_mri"  # T1 -> T2 (papers 002 and 004)
    MSI_TO_HE = "msi_to_he"  # paper 003


class TileSource(StrEnum):
    """Which node writes an experiment's own tile set (``<name>.tileset``)."""

    PAIR_TILES = "pair_tiles"  # modelling ``<name>.build_tiles`` from the registered pairs
    VOLUME_SLICES = "volume_slices"  # modelling ``<name>.build_tiles`` from two volumes
    MSI_TILES = "msi_tiles"  # msi_data_engineering (one tile set per padding colour)
    MSI_WHOLE_VIEWS = "msi_whole_views"  # msi_whole_specimen ``<name>.build_whole_views``
    SHARED = "shared"  # none: it uses another experiment's (:attr:`Experiment.tiles_of`)


class Table(StrEnum):
    """The metric tables (``data/08_reporting``) an evaluated experiment is a row of."""

    METRICS = "metrics_table"  # Table 1 of paper 000: every experiment of the default run
    BASELINE = "baseline_table"  # pix2pix vs the U-Net regression on the MRI tiles
    MSI = "msi_table"  # paper 003 on tiles
    MSI_WHOLE = "msi_whole_table"  # paper 003's own whole-specimen design


class Pipeline(StrEnum):
    """The registered pipeline that trains and evaluates an experiment."""

    DEFAULT = "default"  # ``modelling`` and ``evaluation``, hence ``kedro run``
    MSI_WHOLE_SPECIMEN = "msi_whole_specimen"  # opt-in: ``kedro run --pipeline=...``


@dataclass(frozen=True)
class Experiment:
    """One experiment: what it trains on, what it is measured on, where it is reported.

    Attributes:
        name: the Kedro namespace, the parameter root and the MLflow run name.
        task: what it translates.
        tiles: which node writes its tile set (:class:`TileSource`).
        tiles_of: the experiment whose tile set it uses when ``tiles`` is ``SHARED``.
        model_of: the experiment whose trained generator it measures (an evaluation entry
            that trains nothing, e.g. the patch-trained U-Net on whole views); ``None``: its
            own.
        synthesised: its generator is also slid over every test slide's aligned MRI
            (synthetic whole slides; tile-trained MRI -> histology models).
        group: a node tag shared with other experiments (``msi_to_he``: ``kedro run
            --tags=msi_to_he`` runs the group); ``None``: none. Not a namespace: its nodes'
            namespace is its name alone.
        tables: the metric tables it is a row of.
        pipeline: where it runs (the default run, or an opt-in pipeline).
        full_scale: part of the ``full_scale`` pipeline (the slide path at paper size).
    """

    name: str
    task: Task
    tiles: TileSource
    tiles_of: str | None = None
    model_of: str | None = None
    synthesised: bool = False
    group: str | None = None
    tables: tuple[Table, ...] = (Table.METRICS,)
    pipeline: Pipeline = Pipeline.DEFAULT
    full_scale: bool = False

    def __post_init__(self) -> None:
        if (self.tiles is TileSource.SHARED) != (self.tiles_of is not None):
            raise ValueError(f"{self.name}: tiles_of is given exactly when tiles is 'shared'")

    @property
    def tileset(self) -> str:
        """The catalog name of the tile set it trains and is measured on."""
        return f"{self.tiles_of or self.name}.tileset"

    @property
    def model(self) -> str:
        """The experiment whose ``generator`` and ``training_summary`` it measures."""
        return self.model_of or self.name

    @property
    def trains(self) -> bool:
        """Whether it trains a model of its own (``<name>.train``)."""
        return self.model_of is None

    @property
    def evaluate_node(self) -> str:
        """The full name of its evaluation node (``msi_unet.evaluate``)."""
        return f"{self.name}.evaluate"


_MSI = Task.MSI_TO_HE
_HISTOLOGY = Task.MRI_TO_HISTOLOGY
_MSI_TABLES = (Table.METRICS, Table.MSI)

#: every experiment, in the order of the tables' rows
EXPERIMENTS: tuple[Experiment, ...] = (
    Experiment("whole_slide_4096", _HISTOLOGY, TileSource.PAIR_TILES),
    Experiment("tiles_1024", _HISTOLOGY, TileSource.PAIR_TILES, synthesised=True, full_scale=True),
    Experiment(
        "tiles_256",
        _HISTOLOGY,
        TileSource.PAIR_TILES,
        synthesised=True,
        tables=(Table.METRICS, Table.BASELINE),
        full_scale=True,
    ),
    Experiment(  # seed 003's U-Net regression on tiles_256's tiles
        "unet_baseline",
        _HISTOLOGY,
        TileSource.SHARED,
        tiles_of="tiles_256",
        synthesised=True,
        tables=(Table.METRICS, Table.BASELINE),
    ),
    Experiment("t1_to_t2", Task.MRI_TO_MRI, TileSource.VOLUME_SLICES),  # CycleGAN
    Experiment("t1_to_t2_pix2pix", Task.MRI_TO_MRI, TileSource.SHARED, tiles_of="t1_to_t2"),
    Experiment(
        "msi_to_he_black", _MSI, TileSource.MSI_TILES, group="msi_to_he", tables=_MSI_TABLES
    ),
    Experiment(
        "msi_to_he_white", _MSI, TileSource.MSI_TILES, group="msi_to_he", tables=_MSI_TABLES
    ),
    Experiment(  # the U-Net regression baseline on the black-padded tiles
        "msi_unet",
        _MSI,
        TileSource.SHARED,
        tiles_of="msi_to_he_black",
        group="msi_to_he",
        tables=_MSI_TABLES,
    ),
    Experiment(  # paper 003's own design: pix2pix on whole specimen views
        "msi_to_he_whole",
        _MSI,
        TileSource.MSI_WHOLE_VIEWS,
        tables=(Table.MSI_WHOLE,),
        pipeline=Pipeline.MSI_WHOLE_SPECIMEN,
    ),
    Experiment(  # msi_unet's patch-trained generator measured on the same whole views
        "msi_unet_whole",
        _MSI,
        TileSource.SHARED,
        tiles_of="msi_to_he_whole",
        model_of="msi_unet",
        tables=(Table.MSI_WHOLE,),
        pipeline=Pipeline.MSI_WHOLE_SPECIMEN,
    ),
)


def _check_registry(entries: Iterable[Experiment]) -> None:
    """Names unique; every ``tiles_of`` and ``model_of`` names a registered experiment that
    writes its own tile set / trains its own model."""
    listed = list(entries)
    names = [e.name for e in listed]
    duplicated = sorted({n for n in names if names.count(n) > 1})
    if duplicated:
        raise ValueError(f"experiments registered twice: {duplicated}")
    known = {e.name: e for e in listed}
    for e in listed:
        if e.tiles_of is not None and (
            e.tiles_of not in known or known[e.tiles_of].tiles is TileSource.SHARED
        ):
            raise ValueError(f"{e.name}: tiles_of={e.tiles_of!r} writes no tile set of its own")
        if e.model_of is not None and (e.model_of not in known or not known[e.model_of].trains):
            raise ValueError(f"{e.name}: model_of={e.model_of!r} trains no model of its own")


_check_registry(EXPERIMENTS)


def by_name(name: str) -> Experiment:
    """The registered experiment ``name``.

    Raises:
        KeyError: no such experiment (the message lists the registered ones).
    """
    for experiment in EXPERIMENTS:
        if experiment.name == name:
            return experiment
    raise KeyError(f"no experiment {name!r}; registered: {', '.join(e.name for e in EXPERIMENTS)}")


def experiments(
    *,
    pipeline: Pipeline | None = Pipeline.DEFAULT,
    table: Table | None = None,
    tiles: TileSource | None = None,
    trains: bool | None = None,
    group: str | None = None,
    synthesised: bool | None = None,
    full_scale: bool | None = None,
) -> tuple[Experiment, ...]:
    """The registered experiments that match every given filter (``None``: any), in order."""
    return tuple(
        e
        for e in EXPERIMENTS
        if (pipeline is None or e.pipeline is pipeline)
        and (table is None or table in e.tables)
        and (tiles is None or e.tiles is tiles)
        and (trains is None or e.trains is trains)
        and (group is None or e.group == group)
        and (synthesised is None or e.synthesised is synthesised)
        and (full_scale is None or e.full_scale is full_scale)
    )
