"""The pure parts of scripts/bench_scale.py: how many leads are due, and the targets read off the figures."""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "scripts"))

from bench_scale import Figures, Population, against_sqlite, median_pass, round_ratios, targets, within  # noqa: E402


def test_the_due_leads_are_as_many_as_asked_spread_over_those_stored() -> None:
    spread = Population.of(100_000, 10_000)
    assert (spread.due, spread.every, spread.reach) == (10_000, 10, 100_000)
    assert Population.of(15_000, 10_000).reach == 10_000  # the first 10,000: not all 15,000
    assert Population.of(5_000, 10_000).due == 5_000


def test_a_small_figure_is_compared_as_its_floor() -> None:
    assert within(0.9, 0.2, 1.5, floor=1.0)
    assert not within(1.6, 0.2, 1.5, floor=1.0)
    assert not within(0.31, 0.2, 1.5)


def test_the_targets_compare_the_largest_size_with_the_smallest() -> None:
    measured = {"idle-tick": {10_000: Figures(0.010, 0.02, 0.5), 100_000: Figures(0.030, 0.05, 0.5)},
                "digest": {10_000: Figures(10.0, 12.0, 40.0, 10_000), 100_000: Figures(11.0, 13.0, 50.0, 10_000)},
                "import": {10_000: Figures(0.7, 0.8, 2.0, 10_000), 100_000: Figures(7.0, 9.0, 4.0, 100_000)}}
    lines = targets("SQLite", measured, [10_000, 100_000])
    assert [line.split()[0] for line in lines] == ["MISS", "PASS", "PASS"]
    assert "CPU 3.00x, wall 2.50x" in lines[0] and "CPU per lead 1.10x" in lines[1]
    assert "90 s for 1,000,000 (projected" in lines[2]
    assert targets("SQLite", measured, [10_000]) == ["SQLite: one size measured, no target to read"]


def test_a_digest_pass_is_its_median_pass_and_the_ratio_the_median_of_the_rounds() -> None:
    passes = [Figures(10.0, 10.0, 20.0, 9_000), Figures(11.0, 12.0, 20.0, 9_000), Figures(9.0, 9.0, 20.0, 9_000)]
    sqlite = median_pass(passes)
    assert sqlite.wall == 10.0 and sqlite.rates == (900.0, 750.0, 1000.0)
    assert median_pass(passes[:2]).wall == 12.0  # of two, the slower
    postgres = median_pass([Figures(10.0, 12.0, 20.0, 9_000), Figures(11.0, 12.0, 20.0, 9_000),
                            Figures(9.0, 18.0, 20.0, 9_000)])
    assert [round(ratio, 2) for ratio in round_ratios(postgres, sqlite)] == [0.83, 1.0, 0.5]
    lines = against_sqlite({"SQLite": {"digest": {10_000: sqlite}}, "PostgreSQL": {"digest": {10_000: postgres}}},
                           [10_000])
    assert lines[0].startswith("PASS digest pass at 10,000: PostgreSQL 0.83x") and "(0.83x, 1.00x, 0.50x)" in lines[0]
