"""A document's memory of the events it applied: what it vouches for, and what it must ask."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from lotline.runtime.dedupe import FAR_FUTURE, RecentEvents, digest

NOW = datetime(2026, 11, 22, 12, 0, tzinfo=UTC)


def test_a_new_document_knows_every_event_it_applied_and_no_other() -> None:
    recent = RecentEvents()
    recent.add("pos-1#a", NOW)
    assert recent.knows("pos-1#a", NOW) is True
    assert recent.knows("pos-1#b", NOW - timedelta(days=400)) is False


def test_pruning_forgets_old_events_and_then_cannot_tell_for_them() -> None:
    recent = RecentEvents()
    recent.add("old", NOW - timedelta(hours=80))
    recent.add("new", NOW - timedelta(hours=1))
    recent.prune(NOW, window_s=72 * 3600, max_entries=100)
    assert recent.knows("new", NOW - timedelta(hours=1)) is True
    # Forgotten: the caller must look it up in seen_events, never assume it is new.
    assert recent.knows("old", NOW - timedelta(hours=80)) is None
    assert recent.knows("other", NOW - timedelta(hours=79)) is None
    assert recent.knows("other", NOW - timedelta(hours=2)) is False


def test_a_full_memory_keeps_the_newest_events() -> None:
    recent = RecentEvents()
    for minute in range(10):
        recent.add(f"e{minute}", NOW + timedelta(minutes=minute))
    recent.prune(NOW, window_s=72 * 3600, max_entries=4)
    assert len(recent.seen) == 4
    assert recent.knows("e9", NOW + timedelta(minutes=9)) is True
    assert recent.knows("e6", NOW + timedelta(minutes=6)) is True
    assert recent.knows("e5", NOW + timedelta(minutes=5)) is None


def test_a_full_memory_is_pruned_to_nine_tenths_so_it_is_not_sorted_at_every_prune() -> None:
    recent = RecentEvents()
    for second in range(101):
        recent.add(f"e{second}", NOW + timedelta(seconds=second))
    forgotten = recent.prune(NOW, window_s=72 * 3600, max_entries=100)
    assert len(recent.seen) == 90
    assert sorted(forgotten) == sorted(digest(f"e{second}") for second in range(11))
    assert recent.knows("e10", NOW + timedelta(seconds=10)) is None  # looked up from now on
    assert recent.knows("e11", NOW + timedelta(seconds=11)) is True
    for second in range(101, 111):  # back to 100: nothing to forget yet
        recent.add(f"e{second}", NOW + timedelta(seconds=second))
    assert recent.prune(NOW, window_s=72 * 3600, max_entries=100) == {}
    assert len(recent.seen) == 100


def test_a_document_from_before_vouches_only_for_events_stamped_later() -> None:
    legacy = RecentEvents.from_document(None, NOW)
    assert legacy.knows("x", NOW) is None
    assert legacy.knows("x", NOW + timedelta(hours=2)) is False


def test_the_stored_form_round_trips_without_infinities() -> None:
    recent = RecentEvents()
    recent.add("a", NOW)
    stored = recent.to_document()
    assert stored["since"] is None
    again = RecentEvents.from_document(stored, NOW)
    assert again == recent
    legacy = RecentEvents.from_document(None, NOW)
    assert legacy.to_document()["since"] <= FAR_FUTURE
