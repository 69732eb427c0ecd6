"""The hostile-case harness in the suite: no exit 3, no hang, no traceback, one JSON document.

The cases (``hostile_cases.py``) run as real ``nncli`` processes under resource limits
(``hostile_harness.py``). The fast subset, spec-only commands for the most part, runs by default;
the whole table is slow-marked (``make test-slow``). ``hostile_report.py`` runs either set and
writes the per-category figures to a JSON file.
"""

from __future__ import annotations

import pytest
from hostile_cases import all_cases, fast_cases
from hostile_harness import Case, Outcome, json_document, run_all, run_case

FAST = fast_cases()


@pytest.fixture(scope="module")
def fast_outcomes(tmp_path_factory) -> dict[str, Outcome]:
    """Every fast case, two at a time (the cases are single-threaded processes)."""
    outcomes = run_all(FAST, tmp_path_factory.mktemp("hostile-fast"), workers=2)
    return {o.case.id: o for o in outcomes}


@pytest.mark.parametrize("case", FAST, ids=[c.id for c in FAST])
def test_fast_case(case: Case, fast_outcomes):
    outcome = fast_outcomes[case.id]
    assert outcome.ok, outcome.describe()


@pytest.mark.slow
def test_every_case(tmp_path):
    outcomes = run_all(all_cases(), tmp_path, workers=2)
    bad = [o.describe() for o in outcomes if not o.ok]
    assert not bad, f"{len(bad)} of {len(outcomes)} cases went wrong:\n" + "\n".join(bad)


def test_fast_subset_is_small_and_spans_the_categories():
    cases = all_cases()
    assert 30 <= len(FAST) <= 50
    assert len(cases) >= 300
    assert {c.category for c in FAST} == {c.category for c in cases}


# -- the harness's own judgement, on processes whose outcome is known -----------------------------
def test_json_document_accepts_one_document_and_nothing_else():
    assert json_document('{"a": 1}\n')
    assert not json_document('hello\n{"a": 1}')
    assert not json_document('{"a": 1}\n{"b": 2}\n')
    assert not json_document("")


def test_a_hang_is_killed_and_counted(tmp_path, monkeypatch):
    import hostile_harness

    monkeypatch.setattr(hostile_harness, "HANG_SECONDS", 2)
    monkeypatch.setattr(hostile_harness, "nncli_command", lambda: ["sleep", "30"])
    outcome = run_case(Case("sleeps", "test", ()), tmp_path)
    assert outcome.hang and not outcome.ok


def test_a_traceback_and_exit_3_are_caught(tmp_path, monkeypatch):
    import sys

    import hostile_harness

    crash = "import sys; print('not json'); raise ValueError('boom')"
    monkeypatch.setattr(hostile_harness, "nncli_command", lambda: [sys.executable, "-c", crash])
    outcome = run_case(Case("crash", "test", ("--json",)), tmp_path)
    assert outcome.code == 1 and outcome.traceback and outcome.json_valid is False and not outcome.ok


def test_the_address_space_limit_applies(tmp_path, monkeypatch):
    import sys

    import hostile_harness

    grab = "b = bytearray(8 << 30)"  # 8 GiB: over the case's address-space limit
    monkeypatch.setattr(hostile_harness, "nncli_command", lambda: [sys.executable, "-c", grab])
    outcome = run_case(Case("grab", "test", ()), tmp_path)
    assert outcome.code == 1 and "MemoryError" in outcome.stderr
