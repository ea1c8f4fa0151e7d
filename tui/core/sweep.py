"""One pass over many accounts with bounded concurrency: the headless check and the benchmark."""

from __future__ import annotations

import asyncio
import logging

from .check import check_account, check_failed, log_unexpected
from .credentials import Credentials
from .models import Account, AccountResult, Settings

log = logging.getLogger(__name__)


async def sweep(
    accounts: list[Account], settings: Settings, credentials: Credentials
) -> list[AccountResult]:
    """Check every account, `concurrency` at a time. Each check ends by its deadline (timeout,
    secret lookup included, plus the short LOGOUT grace), so N accounts take about
    ceil(N / concurrency) x timeout however their servers or secret commands behave."""
    gate = asyncio.Semaphore(settings.concurrency)

    async def one(account: Account) -> AccountResult:
        async with gate:
            try:
                return await check_account(account, settings.timeout, credentials=credentials)
            except Exception as exc:
                # One account's bug must not end the sweep for every other account.
                log_unexpected(log, f"the check of {account.id}", exc)
                return check_failed(account.id, exc)

    return list(await asyncio.gather(*(one(a) for a in accounts)))
