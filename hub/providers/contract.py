"""The Provider Connector contract: what every provider plugin implements.

A provider class has a ``code``, ``name``, ``version``, ``capabilities``, a marshmallow
``settings_schema`` (its credentials and settings), and six operations, each returning one
:class:`ProviderResult`. Operations never raise for provider-side outcomes: a timeout, a
5xx or an unreadable answer is ``UNKNOWN``; only programming errors raise.
"""
from __future__ import annotations

import enum
from abc import ABC, abstractmethod
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar

from marshmallow import Schema


class State(str, enum.Enum):
    """The normalized outcome of a provider call (docs/plugins.md, "States")."""

    SUCCESS = "success"      # done: capture the hold, store the serial number/token
    PENDING = "pending"      # accepted, outcome later (callback or status check)
    REJECTED = "rejected"    # refused before fulfilment: the next provider may be tried
    FAILED = "failed"        # definitively failed (e.g. invalid customer number): do not retry
    UNKNOWN = "unknown"      # we do not know (timeout, 5xx, garbage): never retry elsewhere; check status
    REFUNDED = "refunded"    # succeeded earlier, reversed by the provider later

    @property
    def final(self) -> bool:
        return self in {State.SUCCESS, State.FAILED, State.REJECTED, State.REFUNDED}


class Capability(str, enum.Enum):
    PREPAID = "prepaid"
    POSTPAID = "postpaid"
    CALLBACKS = "callbacks"
    BALANCE = "balance"
    CATALOG = "catalog"


@dataclass
class ProviderResult:
    """One normalized result. ``cost`` is what the provider charges the hub (minor units)."""

    state: State
    provider_ref: str | None = None
    serial_number: str | None = None
    cost: int | None = None
    message: str = ""
    raw: Any = None
    ref_id: str | None = None  # the hub's reference the result is about (callbacks)
    provider_code: str | None = None  # the provider's own response code, verbatim
    data: dict[str, Any] = field(default_factory=dict)  # extras: bill details, balance, catalog

    def as_dict(self) -> dict[str, Any]:
        return {"state": self.state.value, "provider_ref": self.provider_ref,
                "serial_number": self.serial_number, "cost": self.cost, "message": self.message,
                "ref_id": self.ref_id, "provider_code": self.provider_code, "data": self.data,
                "raw": self.raw}


@dataclass
class CatalogItem:
    """One product a provider sells."""

    provider_sku: str
    name: str
    category: str  # pulsa, data, pln, ewallet, game, bill
    brand: str
    cost: int
    currency: str = "IDR"
    postpaid: bool = False
    available: bool = True
    raw: Any = None


@dataclass
class PurchaseRequest:
    ref_id: str
    provider_sku: str
    customer_no: str
    callback_url: str | None = None
    amount: int | None = None  # postpaid payment: the bill amount from the inquiry


@dataclass
class InquiryRequest:
    ref_id: str
    provider_sku: str
    customer_no: str


@dataclass
class StatusRequest:
    ref_id: str
    provider_sku: str
    customer_no: str
    provider_ref: str | None = None


@dataclass
class ProviderConfigView:
    """What a provider instance knows of its configuration (credentials already decrypted)."""

    id: str
    provider_code: str
    tenant_id: str | None
    settings: dict[str, Any]
    credentials: dict[str, Any]
    callback_url: str | None = None
    allow_private: bool = False


class CatalogUnavailable(Exception):
    """``catalog`` raises this when it cannot return the provider's complete catalog (an
    error answer, a timeout, one of several price lists missing). Returning a partial or
    empty list instead would make the hub mark the missing products as vanished."""


class CallbackRejected(Exception):
    """``parse_callback`` raises this when a callback is not authentic or not readable."""


class Provider(ABC):
    """Base class of every provider. One instance is made per call with its configuration."""

    code: ClassVar[str]
    name: ClassVar[str]
    version: ClassVar[str] = "0.1"
    capabilities: ClassVar[frozenset[Capability]] = frozenset()
    settings_schema: ClassVar[type[Schema]]
    #: The provider's response codes → normalized states (tests cover it code by code).
    code_table: ClassVar[Mapping[str, State]] = {}

    def __init__(self, config: ProviderConfigView):
        self.config = config
        self.settings = {**config.settings, **config.credentials}

    def map_code(self, code: Any, default: State = State.UNKNOWN) -> State:
        """The normalized state of one provider code (unknown codes → ``default``)."""
        return self.code_table.get(str(code).strip(), default)

    @abstractmethod
    def catalog(self) -> list[CatalogItem]:
        """Every product the provider sells, with its cost. :raise CatalogUnavailable: when
        the complete catalog cannot be read (never return a partial list)."""

    @abstractmethod
    def purchase(self, request: PurchaseRequest) -> ProviderResult:
        """Buy one product (prepaid) or pay one bill (postpaid)."""

    def inquiry(self, request: InquiryRequest) -> ProviderResult:
        """Look up a postpaid bill: ``data`` holds ``amount``, ``customer_name``, ``period``."""
        return ProviderResult(State.FAILED, message="inquiry not supported")

    @abstractmethod
    def check_status(self, request: StatusRequest) -> ProviderResult:
        """The current outcome of an earlier purchase, by the same reference."""

    def parse_callback(self, headers: Mapping[str, str], body: bytes) -> ProviderResult:
        """Verify a callback (raise :class:`CallbackRejected` if unauthentic) and read it."""
        raise CallbackRejected("this provider sends no callbacks")

    def balance(self) -> ProviderResult:
        """The hub's deposit at the provider: ``cost`` is the balance in minor units."""
        return ProviderResult(State.FAILED, message="balance not supported")


def describe(cls: type[Provider]) -> dict[str, Any]:
    return {"code": cls.code, "name": cls.name, "version": cls.version,
            "capabilities": sorted(c.value for c in cls.capabilities),
            "settings": sorted(cls.settings_schema().fields)}
