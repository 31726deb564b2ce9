"""The seq arithmetic of per-device accounting (sensornet/seq_account.py), rule by rule as
docs/accounting.md states them, and properties over generated streams."""

from __future__ import annotations

import itertools
import random

from hypothesis import assume, given
from hypothesis import strategies as st

from sensornet.seq_account import (
    LOOKAHEAD,
    REORDER_TOLERANCE,
    WRAP_WINDOW,
    SeqAccount,
    SeqRow,
    account_seqs,
)

S = 10**9  # one reading a second


def stored(seqs: list[int], t0: int = 0, every: int = S) -> list[SeqRow]:
    return [SeqRow(t0 + k * every, s) for k, s in enumerate(seqs)]


def refused(seqs: list[int], t0: int) -> list[SeqRow]:
    """Dead letters: stamped one after another when the ingester refused them."""
    return [SeqRow(t0 + k, s, refused=True) for k, s in enumerate(seqs)]


def summary(account: SeqAccount) -> list[tuple[int, int, int, int]]:
    return [(e.first_seq, e.last_seq, e.missing, e.duplicates) for e in account.epochs]


def test_gaps_between_lowest_and_highest_are_missing() -> None:
    account = account_seqs(stored([s for s in range(10) if s not in (3, 4)]))
    assert summary(account) == [(0, 9, 2, 0)]
    assert (account.missing, account.resets, account.unplaced) == (2, 0, 0)
    assert account.epochs[0].began == "window"


def test_nothing_is_an_empty_account() -> None:
    account = account_seqs([])
    assert (account.epochs, account.missing, account.resets) == ((), 0, 0)


def test_a_redelivered_dead_letter_counts_once() -> None:
    rows = stored([0, 1, 2, 4]) + refused([3], 3 * S + 5) + refused([3], 60 * S)
    account = account_seqs(rows)
    assert summary(account) == [(0, 4, 0, 1)]


def test_a_reboot_starts_a_new_epoch() -> None:
    before = stored([s for s in range(200) if s != 50])
    after = stored([s for s in range(100) if s not in (7, 8)], t0=300 * S)
    account = account_seqs(before + after)
    assert summary(account) == [(0, 199, 1, 0), (0, 99, 2, 0)]
    assert account.resets == 1 and account.missing == 3
    assert [e.began for e in account.epochs] == ["window", "reset"]


def test_a_reboot_that_counts_back_up_near_the_old_count_is_still_a_reboot() -> None:
    """Just past a wrap the count is low: the new run soon comes within the tolerance."""
    top = 2**16
    before = stored([top - 2, top - 1, *range(41)])
    after = stored(list(range(12)), t0=100 * S)
    account = account_seqs(before + after)
    assert summary(account) == [(top - 2, 40, 0, 0), (0, 11, 0, 0)]
    assert (account.resets, account.wraps) == (1, 1)


def test_stragglers_in_pairs_are_not_a_reboot() -> None:
    """Two runs with overlapping timestamps: readings of the older one land between those
    of the newer, sometimes two in a row."""
    mixed = [*range(50), 100, 50, 51, 101, 52, 102, 103, 53, 54, 104]
    account = account_seqs(stored(mixed))
    assert summary(account) == [(0, 104, 45, 0)]  # 55..99 never came
    assert account.resets == 0


def test_a_16_bit_counter_wraps() -> None:
    top = 2**16
    rows = stored([top - 4, top - 3, top - 1, 0, 1, 3])  # top-2 and 2 lost
    account = account_seqs(rows)
    assert summary(account) == [(top - 4, 3, 2, 0)]
    assert account.wraps == 1 and account.resets == 0
    assert account.epochs[0].as_dict()["counter_bits"] == 16


def test_a_32_bit_counter_wraps() -> None:
    top = 2**32
    account = account_seqs(stored([top - 2, top - 1, 1, 2]))
    assert summary(account) == [(top - 2, 2, 1, 0)]
    assert account.epochs[0].modulus == top


def test_a_drop_from_far_below_the_top_is_a_reboot_not_a_wrap() -> None:
    top = 2**16
    account = account_seqs(stored([top - WRAP_WINDOW - 10, top - WRAP_WINDOW - 9, 0, 1, 2]))
    assert account.resets == 1 and account.wraps == 0


def test_reordered_readings_within_the_tolerance_are_not_a_reboot() -> None:
    seqs = list(range(300))
    for k in range(0, 300 - REORDER_TOLERANCE, 2 * REORDER_TOLERANCE):
        j = k + REORDER_TOLERANCE  # swapped in time: each one the tolerance out of place
        seqs[k], seqs[j] = seqs[j], seqs[k]
    account = account_seqs(stored(seqs))
    assert summary(account) == [(0, 299, 0, 0)]


def test_a_late_redelivered_reading_is_a_duplicate_not_a_reboot() -> None:
    """A reading without ts is stamped on arrival: its redelivery lands after later ones."""
    rows = (
        stored(list(range(201)))
        + stored([100], t0=200 * S + 1)
        + stored(list(range(201, 300)), t0=201 * S)
    )
    account = account_seqs(rows)
    assert summary(account) == [(0, 299, 0, 1)]


def test_a_long_redelivered_run_reads_as_a_restart_and_still_loses_nothing() -> None:
    rows = stored(list(range(201))) + stored(list(range(100, 300)), t0=201 * S)
    account = account_seqs(rows)
    assert account.resets == 1 and account.missing == 0  # docs/accounting.md says why


def test_late_dead_letters_of_a_batch_stay_in_their_epoch() -> None:
    """Readings sent late with their own old ts: the refused ones are stamped on arrival,
    after stored readings with higher seqs."""
    kept = [s for s in range(501) if not 100 <= s < 300]
    rows = stored(kept) + refused(list(range(100, 300)), 500 * S + 1)
    rows += stored(list(range(501, 600)), t0=501 * S)
    account = account_seqs(rows)
    assert summary(account) == [(0, 599, 0, 0)]


def test_readings_refused_as_a_sensor_starts_up_after_a_reboot_open_its_epoch() -> None:
    before = stored(list(range(1001)))
    warming = refused(list(range(5)), 2000 * S)
    after = stored(list(range(5, 50)), t0=2000 * S + 5 * S)
    account = account_seqs(before + warming + after)
    assert summary(account) == [(0, 1000, 0, 0), (0, 49, 0, 0)]


def test_a_late_dead_letter_of_the_epoch_before_a_reboot_goes_back_to_it() -> None:
    before = stored([s for s in range(1001) if s != 700])
    after = stored(list(range(51)), t0=2000 * S)
    late = refused([700], 2051 * S)
    account = account_seqs(before + after + late)
    assert summary(account) == [(0, 1000, 0, 0), (0, 50, 0, 0)]


def test_a_late_dead_letter_at_the_start_of_the_window_opens_nothing() -> None:
    rows = refused([10], 0) + stored(list(range(500, 600)), t0=S)
    account = account_seqs(rows)
    assert summary(account) == [(500, 599, 0, 0)]
    assert account.unplaced == 1


def test_a_device_whose_readings_are_all_refused_is_counted_from_its_dead_letters() -> None:
    rows = [SeqRow(k * S, s, refused=True) for k, s in enumerate([0, 1, 2, 5, 6, 0, 1])]
    account = account_seqs(rows)
    assert [e.missing for e in account.epochs] == [2] and account.duplicates == 2


def test_two_interleaved_publishes_with_their_own_timestamps_are_one_epoch() -> None:
    """As tests/test_faults.py sends them: a second run of seqs whose timestamps overlap
    the first's (each computed as 'ending a minute ago')."""
    first = [SeqRow(k * 100_000_000, k) for k in range(100)]
    second = [SeqRow(5 * S + j * 100_000_000, 100 + j) for j in range(100)]
    account = account_seqs(first + second)
    assert summary(account) == [(0, 199, 0, 0)]


# -- properties -------------------------------------------------------------------------


@st.composite
def counting_runs(draw: st.DrawFn, min_size: int = 1) -> list[int]:
    """A run of a counter from 0 with some readings lost."""
    n = draw(st.integers(min_value=min_size, max_value=400))
    lost = draw(st.sets(st.integers(min_value=1, max_value=max(1, n - 1)), max_size=n // 3))
    return [s for s in range(n) if s not in lost]


@given(counting_runs())
def test_one_run_missing_is_its_gaps(seqs: list[int]) -> None:
    account = account_seqs(stored(seqs))
    assert account.resets == 0 and account.duplicates == 0
    assert account.missing == seqs[-1] - seqs[0] + 1 - len(seqs)


@given(counting_runs(), st.data())
def test_redelivered_dead_letters_never_change_missing(
    seqs: list[int], data: st.DataObject
) -> None:
    copies = data.draw(st.lists(st.sampled_from(seqs), max_size=20))
    times = data.draw(st.lists(st.integers(0, len(seqs) * S), min_size=len(copies)))
    rows = stored(seqs) + [SeqRow(t, s, refused=True) for t, s in zip(times, copies, strict=False)]
    account = account_seqs(rows)
    assert account.missing == seqs[-1] - seqs[0] + 1 - len(seqs)
    assert account.duplicates == len(copies) and account.resets == 0


@given(st.lists(counting_runs(min_size=2 * LOOKAHEAD + 100), min_size=1, max_size=4))
def test_reboots_split_the_account_and_each_epoch_counts_its_own_gaps(
    runs: list[list[int]],
) -> None:
    for before, after in itertools.pairwise(runs):
        # a restart can only be seen when the counter drops well below where it was
        assume(after[LOOKAHEAD] < before[-1] - REORDER_TOLERANCE)
    rows: list[SeqRow] = []
    for n, run in enumerate(runs):
        rows += stored(run, t0=n * 10**6 * S)
    account = account_seqs(rows)
    assert account.resets == len(runs) - 1
    assert [e.missing for e in account.epochs] == [r[-1] + 1 - len(r) for r in runs]


@given(
    st.sampled_from([2**16, 2**32]),
    st.integers(1, 300),
    st.integers(1, 300),
    st.sets(st.integers(0, 599), max_size=100),
)
def test_a_wrap_keeps_counting(modulus: int, below: int, past: int, lost: set[int]) -> None:
    sequence = [(modulus - below + k) % modulus for k in range(below + past)]
    kept = [s for k, s in enumerate(sequence) if k not in lost or k in (0, len(sequence) - 1)]
    assume((below + past) - len(kept) < WRAP_WINDOW)
    account = account_seqs(stored(kept))
    assert account.resets == 0 and account.wraps == 1
    assert account.missing == len(sequence) - len(kept)


@given(
    st.lists(st.tuples(st.integers(0, 10**4), st.integers(0, 2**33), st.booleans()), max_size=200),
)
def test_every_row_is_counted_once_whatever_arrives(raw: list[tuple[int, int, bool]]) -> None:
    rows = [SeqRow(t, s, r) for t, s, r in raw]
    account = account_seqs(rows)
    assert sum(e.rows for e in account.epochs) + account.unplaced == len(rows)
    assert all(e.missing >= 0 and e.duplicates >= 0 for e in account.epochs)
    shuffled = rows[:]
    random.Random(0).shuffle(shuffled)
    assert account_seqs(shuffled) == account  # time order decides, not arrival in the list
