"""Update ids (`wire.new_update_id`): unique, and in the order they were made, so that the
Server's primary key of applied updates grows at its end."""

from __future__ import annotations

from flamenco import wire


def test_update_ids_are_unique_and_sort_in_the_order_they_were_made() -> None:
    made = [wire.new_update_id() for _ in range(2000)]
    assert len(set(made)) == len(made)
    assert sorted(made) == made
    assert all(len(i) == 32 and int(i, 16) >= 0 for i in made)
    wire.TaskUpdate(update_id=made[0], task_id="t")  # what the wire takes
