"""The app card codes kept in the database (WeCom's response_code: 72 h, usable once), on both back-ends."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from collabbot.storage import card_codes
from collabbot.storage.db import Database

NOW = datetime(2026, 12, 1, 1, 0, tzinfo=UTC)
LATER = NOW + timedelta(hours=72)


def test_only_the_latest_code_is_kept_and_it_is_used_once(db: Database) -> None:
    with db.transaction() as s:
        assert card_codes.keep(s, "wecom", "app|lisi|cb-1", "cb-1", "rc-send", LATER, NOW)
        assert card_codes.keep(s, "wecom", "app|lisi|cb-1", "cb-1", "rc-click", LATER, NOW)  # a tap's code wins
        assert not card_codes.keep(s, "wecom", "app|lisi|cb-1", "cb-1", "rc-click", LATER, NOW)  # a redelivery
    with db.transaction() as s:
        assert card_codes.take(s, "wecom", "app|lisi|cb-1", NOW) == card_codes.Code("rc-click", "cb-1")
    with db.transaction() as s:
        assert card_codes.take(s, "wecom", "app|lisi|cb-1", NOW) is None  # once
        # a redelivered tap repeats the used code: it does not come back to life
        assert not card_codes.keep(s, "wecom", "app|lisi|cb-1", "cb-1", "rc-click", LATER, NOW)
        assert card_codes.take(s, "wecom", "app|lisi|cb-1", NOW) is None
        assert card_codes.take(s, "feishu", "app|lisi|cb-1", NOW) is None  # platforms apart


def test_an_expired_code_is_not_taken_and_is_pruned(db: Database) -> None:
    with db.transaction() as s:
        card_codes.keep(s, "wecom", "app|lisi|cb-1", "cb-1", "rc-1", LATER, NOW)
    with db.transaction() as s:
        assert card_codes.take(s, "wecom", "app|lisi|cb-1", LATER) is None
        card_codes.keep(s, "wecom", "app|zhaoliu|cb-2", "cb-2", "rc-2", LATER + timedelta(hours=72), LATER)
        # the expired row went on the way: the same code is new again (WeCom would never repeat one)
        assert card_codes.keep(s, "wecom", "app|lisi|cb-1", "cb-1", "rc-1", LATER + timedelta(hours=1), LATER)


def test_a_code_given_back_is_usable_again_unless_a_newer_one_came(db: Database) -> None:
    with db.transaction() as s:
        card_codes.keep(s, "wecom", "m1", "cb-1", "rc-1", LATER, NOW)
        assert card_codes.take(s, "wecom", "m1", NOW) is not None
        assert card_codes.give_back(s, "wecom", "m1", "rc-1")
        assert card_codes.take(s, "wecom", "m1", NOW) == card_codes.Code("rc-1", "cb-1")
        card_codes.keep(s, "wecom", "m1", "cb-9", "rc-2", LATER, NOW)
        assert not card_codes.give_back(s, "wecom", "m1", "rc-1")
        assert card_codes.take(s, "wecom", "m1", NOW) == card_codes.Code("rc-2", "cb-9")


def test_ids_too_long_for_the_table_are_not_kept(db: Database) -> None:
    with db.transaction() as s:
        assert not card_codes.keep(s, "wecom", "x" * 201, "cb-1", "rc-1", LATER, NOW)
        assert not card_codes.keep(s, "wecom", "m1", "c" * 129, "rc-1", LATER, NOW)
        assert not card_codes.keep(s, "wecom", "m1", "cb-1", "", LATER, NOW)
