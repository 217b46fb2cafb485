"""The paper's Table I and Table II as data, to print beside our numbers.

Source: Li, Liao, Miao, Lu, Luo, "Unsupervised Learning of Facial Landmarks based on Inter-Intra Subject
Consistencies", ICPR 2020 (arXiv 2004.07936, titled without "Facial"); numbers from the ICPR 2020 slides,
as transcribed in docs/paper-results.md. All values are NME in percent of the inter-ocular distance (eye
centres), forward regression (detected -> annotated). `None` marks a "-" in the paper. Table I has a MAFL
and an AFLW column and Table II is MAFL: a report shows them only beside detections of that data set.
"""

from __future__ import annotations

from dataclasses import dataclass

SOURCE = "Li et al., ICPR 2020 (arXiv 2004.07936), slides' Table I/II, as in docs/paper-results.md"


@dataclass(frozen=True)
class TableIRow:
    """One row of Table I: test NME (%) on MAFL and AFLW; `k` is None where the paper gives none."""

    method: str
    k: int | None
    mafl: float | None
    aflw: float | None


TABLE_I: tuple[TableIRow, ...] = (
    TableIRow("TCDCN (supervised)", None, 7.95, 7.65),
    TableIRow("RAR (supervised)", None, None, 7.23),
    TableIRow("MTCNN (supervised)", None, 5.39, 6.90),
    TableIRow("Thewlis 2017", None, 5.83, 8.80),
    TableIRow("Shu", None, 5.45, None),
    TableIRow("Sahasrabudhe", None, 6.01, None),
    TableIRow("Wiles", None, 3.44, None),
    TableIRow("Thewlis", 10, 7.95, None),
    TableIRow("Sanchez (SAIC)", 10, 3.99, 6.69),
    TableIRow("Zhang", 10, 3.46, 7.01),
    TableIRow("Jakab (IMM)", 10, 3.19, 6.86),
    TableIRow("Zhang", 30, 3.15, 6.58),
    TableIRow("Jakab (IMM)", 30, 2.58, 6.31),
    TableIRow("Thewlis", 50, 2.86, 6.54),
    TableIRow("Jakab (IMM)", 50, 2.54, 6.33),
    TableIRow("Baseline (their re-implementation of SAIC)", 10, 3.41, 6.59),
    TableIRow("+ inter-subject mapping only", 10, 3.10, 6.24),
    TableIRow("+ cycle (intra-subject) only", 10, 3.12, 6.28),
    TableIRow("Ours, all", 10, 3.08, 6.20),
    TableIRow("Ours, all", 30, 2.89, 6.08),
    TableIRow("Ours, all", 50, 2.85, 6.04),
)

TABLE_I_DATASETS = ("mafl", "aflw")

# Table II: MAFL test NME (%) with N annotated training images for the regressor.
TABLE_II_SIZES: tuple[int | str, ...] = (1, 5, 10, 100, 500, 1000, 5000, "all")
TABLE_II: dict[str, tuple[float | None, ...]] = {  # column -> values in TABLE_II_SIZES order
    "Thewlis K=30": (10.82, 9.25, 8.49, None, None, None, None, 7.15),
    "Sanchez K=10": (18.70, 8.77, 7.13, 4.53, 4.13, 4.16, 4.05, 3.99),
    "Jakab K=30": (12.89, 8.16, 7.19, 4.29, 2.83, 2.73, 2.60, 2.58),
    "Ours K=10": (9.03, 7.50, 7.09, 3.71, 3.23, 3.17, 3.09, 3.08),
}
TABLE_II_OURS = "Ours K=10"
TABLE_II_ALL_IMAGES = 18997  # "All" = MAFL train less the reference's 3 excluded images (docs/reference.md)


def table_i(dataset: str) -> list[tuple[str, int | None, float]]:
    """Table I rows that report `dataset` ('mafl' or 'aflw') as (method, K, NME %), paper order."""
    if dataset not in TABLE_I_DATASETS:
        raise ValueError(f"Table I has no column {dataset!r}; expected one of {TABLE_I_DATASETS}")
    rows = [(row.method, row.k, getattr(row, dataset)) for row in TABLE_I]
    return [(method, k, value) for method, k, value in rows if value is not None]


def table_ii(column: str, n: int | str) -> float | None:
    """Table II value (NME %) of `column` at size `n` (an int or 'all'); None if absent or '-'."""
    if n not in TABLE_II_SIZES:
        return None
    return TABLE_II[column][TABLE_II_SIZES.index(n)]
