"""Commands → read models equal to a fold of the events; queries over them."""

from __future__ import annotations

import asyncpg
from proj_helpers import proj_assert_equals_fold, proj_catch_up, proj_drive

from services.commands import CommandService


async def test_read_models_equal_the_fold_of_the_events(
    proj_service: CommandService, fresh_pool: asyncpg.Pool
) -> None:
    await proj_drive(proj_service, 40, steps=10)
    await proj_catch_up(fresh_pool, batch_size=37)
    await proj_assert_equals_fold(fresh_pool)


async def test_catching_up_in_many_small_batches_equals_one_big_batch(
    proj_service: CommandService, fresh_pool: asyncpg.Pool
) -> None:
    await proj_drive(proj_service, 10, steps=8, seed=11)
    await proj_catch_up(fresh_pool, batch_size=1)
    await proj_assert_equals_fold(fresh_pool)
    await proj_drive(proj_service, 5, steps=8, seed=12)
    await proj_catch_up(fresh_pool, batch_size=1000)
    await proj_assert_equals_fold(fresh_pool)
