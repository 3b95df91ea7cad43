"""lab.verdict.agree: what the lane bench calls the same observation in two runs of one cell."""

from __future__ import annotations

from lab.verdict import Finding, Outcome, Verdict, aggregate, agree

BUG = Finding(Verdict.BUG, "gevent-concurrent-socket-use", "crash", crash=True)


def attempts(bugs: int, n: int) -> Outcome:
    return aggregate([Outcome.of([BUG] if i < bugs else []) for i in range(n)])


def test_single_attempt_cells_agree_only_on_equal_findings():
    assert agree(Outcome.of([BUG]), Outcome.of([BUG]))
    assert not agree(Outcome.of([BUG]), Outcome.of([]))
    assert not agree(Outcome(Verdict.NA, "n/a"), Outcome.of([]))


def test_a_race_seen_in_one_of_three_agrees_with_none_of_three():
    assert agree(attempts(0, 3), attempts(1, 3))        # intervals [0, 56%] and [6%, 79%]


def test_rates_whose_intervals_do_not_overlap_disagree():
    assert not agree(attempts(0, 20), attempts(18, 20))
    assert agree(attempts(18, 20), attempts(17, 20))


def test_a_repeated_cell_against_a_single_attempt():
    assert agree(attempts(1, 3), Outcome.of([BUG]))
    assert agree(attempts(20, 20), Outcome.of([BUG]))   # the same bug every time
    assert agree(attempts(0, 20), Outcome.of([]))       # pass against pass
    assert not agree(attempts(0, 20), Outcome.of([BUG]))
    assert not agree(attempts(20, 20), Outcome.of([]))
