"""The transactions service's message handlers, registered in one table."""
from __future__ import annotations

from flask import Flask

from hub.bus import register_command_handler, subscribe
from hub.providers.messages import ProviderCallbackReceived
from hub.transactions.messages import CheckTransactionStatus, ProcessTransaction
from hub.transactions.processing import (
    check_transaction_status,
    on_provider_callback,
    process_transaction,
    process_transactions,
)


def register(app: Flask) -> None:
    # Provider calls: own short units of work, never one held across a call.
    register_command_handler(app, ProcessTransaction, process_transaction, own_uow=True,
                             batch=process_transactions)
    register_command_handler(app, CheckTransactionStatus, check_transaction_status, own_uow=True)
    # Callbacks move money in the runner's unit of work (no provider call).
    subscribe(app, ProviderCallbackReceived, on_provider_callback)
