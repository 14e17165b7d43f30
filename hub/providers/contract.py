"""The Provider Connector contract: what every provider plugin implements.

A provider class has a ``code``, ``name``, ``version``, ``capabilities``, a marshmallow
``settings_schema`` (its credentials and settings), a ``code_table``, and six operations,
each returning one :class:`ProviderResult` (``catalog`` a list of :class:`CatalogItem`).
Operations never raise for provider-side outcomes: a timeout, a 5xx or an unreadable answer
is ``UNKNOWN``; only programming errors raise. The reference is docs/plugins.md.

The word ``sku`` means the provider's own product code everywhere in this contract (the
hub's product code is ``product_code``). The 0.1 names (``provider_sku``) still work, with a
``DeprecationWarning``, until hub 0.3.
"""
from __future__ import annotations

import enum
import functools
import warnings
from abc import ABC, abstractmethod
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar

from marshmallow import Schema

#: The contract's version: a plugin built against 1.x works with every hub whose
#: CONTRACT_VERSION has the same major number (docs/plugins.md, "Compatibility").
CONTRACT_VERSION = "1.0"


class State(str, enum.Enum):
    """The normalized outcome of a provider call (docs/plugins.md, "States")."""

    SUCCESS = "success"      # done: capture the hold, store the serial number/token
    PENDING = "pending"      # accepted, outcome later (callback or status check)
    REJECTED = "rejected"    # refused before fulfilment: the next provider may be tried
    FAILED = "failed"        # definitively failed (e.g. invalid customer number): do not retry
    UNKNOWN = "unknown"      # we do not know (timeout, 5xx, garbage): never retry elsewhere; check status
    REFUNDED = "refunded"    # succeeded earlier, reversed by the provider later
    #: ``check_status`` only: the provider has no purchase under this reference. While the
    #: reference is younger than the provider's ``not_found_grace`` the hub keeps checking;
    #: after it, the purchase was never received (nothing was bought).
    NOT_FOUND = "not_found"

    @property
    def final(self) -> bool:
        return self in {State.SUCCESS, State.FAILED, State.REJECTED, State.REFUNDED}


class Capability(str, enum.Enum):
    """What a provider can do beyond ``purchase`` and ``check_status``; the hub calls only
    the operations a provider declares (and the contract kit checks only those)."""

    PREPAID = "prepaid"      # purchase() buys prepaid products
    POSTPAID = "postpaid"    # inquiry() looks bills up; purchase() with amount pays them
    CALLBACKS = "callbacks"  # the provider posts outcomes; parse_callback() reads them
    BALANCE = "balance"      # balance() reads the hub's deposit at the provider
    CATALOG = "catalog"      # catalog() lists products and costs


def _renamed(old: str, new: str, *, removed_in: str = "0.3"):
    """Keep ``old`` as a deprecated alias of the dataclass field ``new`` (keyword argument
    and attribute) for one release."""

    def decorate(cls):
        init = cls.__init__
        message = f"{cls.__name__}.{old} is deprecated: use {new} (removed in hub {removed_in})"

        @functools.wraps(init)
        def __init__(self, *args, **kwargs):
            if old in kwargs:
                warnings.warn(message, DeprecationWarning, stacklevel=2)
                kwargs[new] = kwargs.pop(old)
            init(self, *args, **kwargs)

        def read(self):
            warnings.warn(message, DeprecationWarning, stacklevel=2)
            return getattr(self, new)

        def write(self, value):
            warnings.warn(message, DeprecationWarning, stacklevel=2)
            setattr(self, new, value)

        cls.__init__ = __init__
        setattr(cls, old, property(read, write, doc=f"Deprecated alias of ``{new}``."))
        return cls

    return decorate


@dataclass
class ProviderResult:
    """One normalized answer of a provider operation.

    :param state: the outcome (docs/plugins.md, "States": what the hub does with each).
    :param provider_ref: the provider's own transaction id, when it gave one.
    :param serial_number: the serial number or token delivered (PLN tokens), on success.
    :param cost: what the provider charges the hub, in integer minor units (balance: the deposit).
    :param message: a short human-readable reason (shown to operators, stored in the timeline).
    :param raw: the provider's answer verbatim (kept for disputes).
    :param ref_id: the hub's reference the result is about (set it in ``parse_callback``).
    :param provider_code: the provider's own response code, verbatim (``rc``).
    :param data: extras: ``amount``/``customer_name``/``period`` of an inquiry, ``items`` of a
        catalog call, ``not_sent: True`` when the request never left the hub.
    :param transport_failure: True when there is no answer about this purchase because the
        provider's transport failed: connection refused, timeout, connection cut, HTTP 5xx, an
        unreadable body. False for any answer the provider gave about this request (even
        ``UNKNOWN`` for an undefined code). Only transport failures count against the
        configuration's shared circuit breaker (every tenant's routing); every other bad outcome
        counts against the calling tenant's breaker on it only. The hub's HTTP client sets it
        (its errors build such results), and a call that met one is marked even when the plugin
        forgot.
    """

    state: State
    provider_ref: str | None = None
    serial_number: str | None = None
    cost: int | None = None
    message: str = ""
    raw: Any = None
    ref_id: str | None = None
    provider_code: str | None = None
    data: dict[str, Any] = field(default_factory=dict)
    transport_failure: bool = False

    def as_dict(self) -> dict[str, Any]:
        return {"state": self.state.value, "provider_ref": self.provider_ref,
                "serial_number": self.serial_number, "cost": self.cost, "message": self.message,
                "ref_id": self.ref_id, "provider_code": self.provider_code, "data": self.data,
                "transport_failure": self.transport_failure, "raw": self.raw}


@_renamed("provider_sku", "sku")
@dataclass
class CatalogItem:
    """One product a provider sells.

    :param sku: the provider's code of the product (what ``purchase`` receives back).
    :param category: ``pulsa``, ``data``, ``pln``, ``ewallet``, ``game``, ``bill``...
    :param brand: the operator or brand, lower case (``telkomsel``, ``pln``).
    :param cost: what the provider charges the hub, integer minor units (postpaid: its fee).
    """

    sku: str
    name: str
    category: str
    brand: str
    cost: int
    currency: str = "IDR"
    postpaid: bool = False
    available: bool = True
    raw: Any = None


@_renamed("provider_sku", "sku")
@dataclass
class PurchaseRequest:
    """Buy ``sku`` for ``customer_no`` under the hub's reference ``ref_id`` (send it to the
    provider as its idempotency key / reference; status checks use the same one).

    :param callback_url: where the provider should post this purchase's callbacks (the
        configuration's callback URL), for providers that take it per request.
    :param amount: a postpaid payment: the bill amount from the inquiry (same ``ref_id``).
    """

    ref_id: str
    sku: str
    customer_no: str
    callback_url: str | None = None
    amount: int | None = None


@_renamed("provider_sku", "sku")
@dataclass
class InquiryRequest:
    """Look up the bill of ``customer_no`` for the postpaid product ``sku``."""

    ref_id: str
    sku: str
    customer_no: str


@_renamed("provider_sku", "sku")
@dataclass
class StatusRequest:
    """The outcome of the purchase sent under ``ref_id`` (``provider_ref``: the provider's own
    id of it, when an earlier answer gave one)."""

    ref_id: str
    sku: str
    customer_no: str
    provider_ref: str | None = None


@dataclass
class ProviderConfigView:
    """What a provider instance knows of its configuration (credentials already decrypted).

    :param settings: the configuration's settings (stored in clear).
    :param credentials: its credentials (encrypted at rest, decrypted for this call).
    :param callback_url: where the provider must post callbacks for this configuration.
    :param allow_private: the hub allows private/loopback destinations (tests, local
        simulators): pass it on to :meth:`hub.providers.http.ProviderHttp.request`.
    """

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
    """Base class of every provider. One instance is made per call with its configuration:
    keep no state between calls (several processes and threads call it at once).

    Every attribute below is read by the hub or by the contract kit; docs/plugins.md
    ("The Provider class") says what each changes.
    """

    #: unique code: in configurations, URLs (``/callbacks/{code}/{config_id}``) and logs
    code: ClassVar[str]
    #: shown by ``rop plugins list`` and ``rop providers list``
    name: ClassVar[str]
    version: ClassVar[str] = "0.1"
    #: the optional operations this provider implements
    capabilities: ClassVar[frozenset[Capability]] = frozenset()
    #: a marshmallow Schema of its settings and credentials (fields with
    #: ``metadata={"secret": True}`` are credentials: encrypted, never shown)
    settings_schema: ClassVar[type[Schema]]
    #: The provider's response codes → normalized states (tests cover it code by code).
    code_table: ClassVar[Mapping[str, State]] = {}
    #: The name of the credential the provider's callbacks are signed with (a field of
    #: ``settings_schema``; never give it a default). Where the hub creates a configuration
    #: without it, it generates a random one; a configuration without it has callbacks
    #: whose authenticity cannot be proven, and they move no money (a status check does).
    callback_secret_setting: ClassVar[str | None] = None
    #: True when even a verified callback proves little (a static header, a signature over
    #: the reference only, not the body): such a callback moves no money by itself; the
    #: hub checks the status of its reference and the status answer decides.
    weak_callback_auth: ClassVar[bool] = False
    #: Seconds after a purchase was sent after which the provider's "no such transaction"
    #: answer (``State.NOT_FOUND`` from ``check_status``) means it was never received, as the
    #: provider's documentation states. ``None``: the provider cannot answer "not found"
    #: reliably; ``check_status`` never returns ``NOT_FOUND``.
    not_found_grace: ClassVar[float | None] = None
    #: False only for providers that make no network call at all (the sandbox): the
    #: contract kit then skips its network fault checks.
    makes_network_calls: ClassVar[bool] = True

    def __init__(self, config: ProviderConfigView):
        self.config = config
        #: settings and credentials merged, as the configuration stores them (no defaults
        #: applied: load them through ``settings_schema`` for those)
        self.settings: dict[str, Any] = {**config.settings, **config.credentials}

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
        """Verify a callback (raise :class:`CallbackRejected` if unauthentic) and read it.

        With the secret of :attr:`callback_secret_setting` empty there is nothing to verify
        with: read the callback (its ``ref_id`` and claimed state) without verifying. The hub
        knows the configuration has no secret and uses such a callback only to check the
        status of that reference."""
        raise CallbackRejected("this provider sends no callbacks")

    def balance(self) -> ProviderResult:
        """The hub's deposit at the provider: ``cost`` is the balance in minor units."""
        return ProviderResult(State.FAILED, message="balance not supported")


def credential_fields(cls: type[Provider]) -> list[str]:
    """The provider's credentials: the fields of its ``settings_schema`` declared with
    ``metadata={"secret": True}`` (given apart from the settings, encrypted at rest, masked
    when shown)."""
    return sorted(name for name, f in cls.settings_schema().fields.items() if f.metadata.get("secret"))


def setting_fields(cls: type[Provider]) -> list[str]:
    """The provider's settings: every other field of its ``settings_schema`` (stored in clear)."""
    return sorted(name for name, f in cls.settings_schema().fields.items() if not f.metadata.get("secret"))


def describe(cls: type[Provider]) -> dict[str, Any]:
    return {"code": cls.code, "name": cls.name, "version": cls.version,
            "capabilities": sorted(c.value for c in cls.capabilities),
            "settings": setting_fields(cls), "credentials": credential_fields(cls)}
