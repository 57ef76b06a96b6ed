"""The data of every Lotline event, each defined once, with the rules the business relies on."""

from __future__ import annotations

import hashlib
import re
from collections import Counter
from collections.abc import Callable
from datetime import date, datetime
from enum import StrEnum
from typing import Annotated, ClassVar

from pydantic import (
    AfterValidator,
    AwareDatetime,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    Strict,
    StringConstraints,
    ValidationInfo,
    field_validator,
    model_validator,
)
from pydantic.config import JsonDict
from stdnum import ean
from stdnum.exceptions import ValidationError as StdnumValidationError

from lotline.events.topics import EventType


def _valid_gtin(value: str) -> str:
    """GTIN-8/12/13/14 with a correct check digit, stored as the 14-digit GTIN."""
    try:
        digits = ean.validate(value)
    except StdnumValidationError as exc:
        raise ValueError(f"{value!r} is not a valid GTIN: {exc}") from None
    if len(digits) not in (8, 12, 13, 14):
        raise ValueError(f"{value!r} is not a valid GTIN: it must have 8, 12, 13 or 14 digits")
    return digits.zfill(14)


# What the schemas say is all a consumer may refuse an event for. A rule they cannot state
# (arithmetic across fields, a check digit, one date before another) binds whoever builds an
# event in Python, Lotline's services and tools; the codec decodes in this context, where
# those rules are skipped, and the consumer answers a broken one as business (its
# `rule_broken`: a receipt-rejected, a warranty-claim-refused), never by the DLQ.
DECODING: dict[str, bool] = {"lotline.decoding": True}


def _decoding(info: ValidationInfo) -> bool:
    return isinstance(info.context, dict) and bool(info.context.get("lotline.decoding"))


# JSON Schema's integer: never a string or a boolean, whatever Python would make of them (the
# codec reads 2.0 as the integer it is: `lotline.events.codec`).
Whole = Annotated[int, Strict()]

# Identifiers travel as Kafka keys, URL path segments and CSV cells: printable ASCII, no
# spaces, and no "/" (a path segment could not carry it: one rule for every identifier).
# Taken as sent: a padded identifier is refused (the pattern has no space), not trimmed.
IDENTIFIER_PATTERN = r"^[!-.0-~]+$"
Identifier = Annotated[
    str, StringConstraints(min_length=1, max_length=64, pattern=IDENTIFIER_PATTERN)
]
Sku = Annotated[Identifier, Field(description="Stock keeping unit, the product's key")]
Location = Annotated[Identifier, Field(description="Store or warehouse code")]
# GS1 AI (10) allows up to 20 characters; a serial (AI 21) up to 20, an IMEI 15 digits.
# Both get a little room for retailers' own codes.
LotCode = Annotated[str, StringConstraints(min_length=1, max_length=40, pattern=IDENTIFIER_PATTERN)]
Serial = Annotated[str, StringConstraints(min_length=1, max_length=64, pattern=IDENTIFIER_PATTERN)]


def _distinct_serials(values: list[str]) -> list[str]:
    _distinct(values, "serials")
    return values


# The schema says it too (`uniqueItems`): serials name units, and a unit is there once.
Serials = Annotated[
    list[Serial], AfterValidator(_distinct_serials), Field(json_schema_extra={"uniqueItems": True})
]
Gtin = Annotated[str, AfterValidator(_valid_gtin), Field(description="GTIN, check digit valid")]
# What the schema can say of a GTIN: 8, 12, 13 or 14 digits. Its check digit it cannot, so
# a product-registered with a wrong one is taken, and its GTIN names nothing (no GS1 link:
# `lotline.events.gs1`); the catalog, which builds it, checks the digit.
GTIN_PATTERN = r"^(?:[0-9]{8}|[0-9]{12,14})$"
GtinDigits = Annotated[
    str,
    StringConstraints(pattern=GTIN_PATTERN),
    AfterValidator(lambda digits: digits.zfill(14)),
    Field(description="GTIN-8, -12, -13 or -14, kept as 14 digits; check digit valid"),
]
# At most a billion: more is a typo or an attack, and beyond 2**63 no database stores it.
MAX_QUANTITY = 1_000_000_000
Quantity = Annotated[
    Whole, Field(gt=0, le=MAX_QUANTITY, description="Units, more than zero, at most a billion")
]
# Text must say something: not blank, which a pattern states (a character that is not
# whitespace, as Python's str.isspace and JavaScript's \s see it), kept as sent.
WHITESPACE = (
    " \t\n\r\f\v\x1c\x1d\x1e\x1f\x85\xa0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000\ufeff"
)
NOT_BLANK_PATTERN = f"[^{WHITESPACE}]"
Text = Annotated[str, StringConstraints(min_length=1, max_length=500, pattern=NOT_BLANK_PATTERN)]

# Every integer is stored, and BSON's integers have 64 bits: a bigger one would be accepted
# here and then fail at write time, batch after batch.
MAX_INT64 = 2**63 - 1
Int64 = Annotated[Whole, Field(le=MAX_INT64)]

# Times and dates are stored as BSON dates, which (through Python) hold years 1 to 9999 in
# UTC. A time at either end leaves that range once converted to UTC (9999-12-31T23:59:59-14:00
# is in year 10000), so years 1000 to 9998 are what the contract accepts: every offset stays
# inside, and the schema can say it with a pattern.
FIRST_YEAR, LAST_YEAR = 1000, 9998
YEAR_PATTERN = r"^(?:[1-8][0-9]{3}|9[0-8][0-9]{2}|99[0-8][0-9])-"
# RFC 3339 as JSON Schema's `date` and `date-time` formats mean it, years as above, without
# leap seconds (Python has none). The schema states the pattern, and the codec holds a value
# to it: no unix seconds, no date without its time, no time without its seconds or offset.
_YEAR = r"(?:[1-8][0-9]{3}|9[0-8][0-9]{2}|99[0-8][0-9])"
_DATE = rf"{_YEAR}-(?:0[1-9]|1[0-2])-(?:0[1-9]|[12][0-9]|3[01])"
_TIME = (
    rf"{_DATE}[Tt](?:[01][0-9]|2[0-3]):[0-5][0-9]:[0-5][0-9](?:\.[0-9]+)?"
    r"(?:[Zz]|[+-](?:[01][0-9]|2[0-3]):[0-5][0-9])"
)
DATE_PATTERN, TIME_PATTERN = f"^{_DATE}$", f"^{_TIME}$"


def _rfc3339(body: str, what: str) -> Callable[[object], object]:
    form, any_year = re.compile(body), re.compile(body.replace(_YEAR, "([0-9]{4})", 1))

    def check(value: object) -> object:
        if isinstance(value, date):
            return value  # built in Python (a datetime is a date too)
        if not isinstance(value, str):
            raise ValueError(f"{value!r} is not a {what}: an RFC 3339 string is expected")
        if not form.fullmatch(value):
            if year := any_year.fullmatch(value):
                raise ValueError(
                    f"year {year[1]} is outside {FIRST_YEAR}..{LAST_YEAR}, the years Lotline stores"
                )
            raise ValueError(f"{value!r} is not an RFC 3339 {what}")
        return value

    return check


def _storable_year(value: date) -> date:
    if not FIRST_YEAR <= value.year <= LAST_YEAR:
        raise ValueError(
            f"year {value.year} is outside {FIRST_YEAR}..{LAST_YEAR}, the years Lotline stores"
        )
    return value


def _storable_time(value: datetime) -> datetime:
    _storable_year(value)
    return value


Time = Annotated[
    AwareDatetime,
    BeforeValidator(_rfc3339(_TIME, "date-time")),
    AfterValidator(_storable_time),
    Field(json_schema_extra={"pattern": TIME_PATTERN}),
]
Date = Annotated[
    date,
    BeforeValidator(_rfc3339(_DATE, "date")),
    AfterValidator(_storable_year),
    Field(json_schema_extra={"pattern": DATE_PATTERN}),
]


class Tracking(StrEnum):
    """How finely a product's stock is tracked."""

    SERIAL = "serial"
    BATCH = "batch"
    QUANTITY = "quantity"


class ReturnReason(StrEnum):
    CUSTOMER = "customer"
    RECALL = "recall"
    DAMAGED = "damaged"


class Classification(StrEnum):
    """FDA-style recall classes: I is the most dangerous."""

    I = "I"  # noqa: E741 - the recall class is called I
    II = "II"
    III = "III"


class FlagReason(StrEnum):
    """Why a sale that already happened needs a person's attention."""

    RECALLED = "recalled"
    QUARANTINED = "quarantined"
    EXPIRED = "expired"
    UNKNOWN_SERIAL = "unknown_serial"
    SERIAL_NOT_IN_STOCK = "serial_not_in_stock"
    INSUFFICIENT_STOCK = "insufficient_stock"
    UNKNOWN_SKU = "unknown_sku"
    UNKNOWN_LOT = "unknown_lot"
    TRACKING_MISMATCH = "tracking_mismatch"


class RejectReason(StrEnum):
    """Why (part of) a receipt was not booked."""

    DUPLICATE_SERIAL = "duplicate_serial"
    TRACKING_MISMATCH = "tracking_mismatch"
    MISSING_LOT = "missing_lot"
    MISSING_SERIALS = "missing_serials"
    UNKNOWN_SKU = "unknown_sku"
    # Rules the schema cannot state: the receipt is not booked anywhere (ItemReceived.rule_broken).
    SERIALS_NOT_QUANTITY = "serials_not_quantity"
    PRODUCED_AFTER_EXPIRY = "produced_after_expiry"


class AdjustmentReason(StrEnum):
    """Why a store changed its on-hand outside a sale, receipt or return."""

    DAMAGED = "damaged"
    EXPIRED = "expired"
    THEFT = "theft"
    FOUND = "found"
    SAMPLE = "sample"
    OTHER = "other"


class AdjustmentDirection(StrEnum):
    IN = "in"
    OUT = "out"


class DisposalMethod(StrEnum):
    """What became of quarantined stock that left the store for good."""

    DESTROYED = "destroyed"
    RETURNED_TO_SUPPLIER = "returned_to_supplier"


class ClaimKind(StrEnum):
    """What the after-sales desk does about a faulty sold unit."""

    REPAIR = "repair"
    REPLACEMENT = "replacement"
    REFUND = "refund"


class ClaimRefusal(StrEnum):
    """Why the serial registry refused a warranty claim."""

    OUTSIDE_WARRANTY = "outside_warranty"
    NO_WARRANTY = "no_warranty"
    NOT_SOLD = "not_sold"
    UNKNOWN_SERIAL = "unknown_serial"
    UNKNOWN_SKU = "unknown_sku"
    REPLACEMENT_NOT_IN_STOCK = "replacement_not_in_stock"
    REPLACEMENT_RECALLED = "replacement_recalled"
    REPLACEMENT_IS_CLAIMED_UNIT = "replacement_is_claimed_unit"


class UnitStatus(StrEnum):
    """Where a serialized unit physically is; a recall is kept apart from this."""

    IN_STOCK = "in_stock"
    SOLD = "sold"
    RETURNED = "returned"
    # What the store's own operations do to a unit: a count that did not find it (still
    # thought to be at its location), an adjustment that wrote it off (damaged, expired,
    # stolen, given as a sample...), and a disposal that destroyed it or sent it back.
    MISSING = "missing"
    WRITTEN_OFF = "written_off"
    DESTROYED = "destroyed"
    RETURNED_TO_SUPPLIER = "returned_to_supplier"


class EventData(BaseModel):
    """Base of every event's data: strict about unknown fields, so typos are caught."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    event_type: ClassVar[EventType]
    sku: Sku

    @property
    def key(self) -> str:
        return self.sku

    @property
    def fact_key(self) -> str | None:
        """The business key that identifies this fact, if it has one: the same fact sent
        twice (under any envelope id) is applied once. None: the envelope's id decides."""
        return None


class ProductRegistered(EventData):
    """A product was registered or changed in the catalog (the topic keeps the latest)."""

    event_type: ClassVar[EventType] = EventType.PRODUCT_REGISTERED

    name: Text
    tracking: Tracking
    gtin: GtinDigits | None = None
    shelf_life_days: Whole | None = Field(None, ge=0, le=36500)
    warranty_months: Whole | None = Field(
        None, ge=0, le=1200, description="Warranty from the sale, in months; none: no warranty"
    )
    revision: Int64 = Field(1, ge=1, description="Increases with every change of the product")

    @field_validator("gtin")
    @classmethod
    def _check_digit(cls, gtin: str | None, info: ValidationInfo) -> str | None:
        return gtin if gtin is None or _decoding(info) else _valid_gtin(gtin)


class Lot(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    code: LotCode
    expires_on: Date | None = None
    produced_on: Date | None = None

    def rule_broken(self) -> str | None:
        if self.expires_on and self.produced_on and self.produced_on > self.expires_on:
            return f"produced_on {self.produced_on} is after expires_on {self.expires_on}"
        return None

    @model_validator(mode="after")
    def _produced_before_expiry(self, info: ValidationInfo) -> Lot:
        problem = None if _decoding(info) else self.rule_broken()
        if problem:
            raise ValueError(problem)
        return self


class ItemReceived(EventData):
    """Goods arrived at a location: a quantity, a lot of a batch item, or serialized units."""

    event_type: ClassVar[EventType] = EventType.ITEM_RECEIVED

    receipt_id: Identifier
    location: Location
    quantity: Quantity
    lot: Lot | None = Field(None, description="Required for batch items")
    serials: Serials | None = Field(
        None,
        description="Serial items only: exactly `quantity` distinct serials (else the receipt "
        "is not booked: receipt-rejected serials_not_quantity)",
    )
    supplier: Text | None = None
    received_at: Time | None = None

    def rule_broken(self) -> tuple[RejectReason, str] | None:
        """The rule of the contract this receipt breaks that its schema cannot state, if any:
        such a receipt is booked nowhere, and the serial registry answers it."""
        if self.serials is not None and len(self.serials) != self.quantity:
            return RejectReason.SERIALS_NOT_QUANTITY, (
                f"serials lists {len(self.serials)} serials but quantity is {self.quantity}"
            )
        problem = self.lot.rule_broken() if self.lot else None
        if self.lot and problem:
            return RejectReason.PRODUCED_AFTER_EXPIRY, f"lot {self.lot.code}: {problem}"
        return None

    @model_validator(mode="after")
    def _serials_match_quantity(self, info: ValidationInfo) -> ItemReceived:
        broken = None if _decoding(info) else self.rule_broken()
        if broken:
            raise ValueError(broken[1])
        return self

    @property
    def fact_key(self) -> str:
        # One receipt line: a receipt of a SKU at a location, per lot, and for serial items
        # per set of serials (the same receipt id with other serials is another receipt).
        lot = self.lot.code if self.lot else ""
        serials = ""
        if self.serials:
            joined = "\n".join(sorted(self.serials)).encode()
            serials = hashlib.blake2b(joined, digest_size=8).hexdigest()
        return f"receipt {self.sku} {self.location} {self.receipt_id} {lot} {serials}"

    def check_tracking(self, tracking: Tracking) -> str | None:
        """What this receipt lacks for a product tracked this way, or None if it fits."""
        if tracking is Tracking.SERIAL and self.serials is None:
            return "a serial item's receipt must list its serials"
        if tracking is not Tracking.SERIAL and self.serials is not None:
            return f"serials given for a {tracking.value} item"
        if tracking is Tracking.BATCH and self.lot is None:
            return "a batch item's receipt must carry a lot code"
        return None


# What the schema says of a line with a serial: it is one unit.
_HAS_SERIAL: JsonDict = {"properties": {"serial": {"type": "string"}}, "required": ["serial"]}
_ONE_UNIT: JsonDict = {"properties": {"quantity": {"const": 1}}}


class ItemSold(EventData):
    """A till sold a line: a fact, applied as well as it can be and flagged if wrong."""

    event_type: ClassVar[EventType] = EventType.ITEM_SOLD
    model_config = ConfigDict(json_schema_extra={"if": _HAS_SERIAL, "then": _ONE_UNIT})

    sale_id: Identifier
    line: Int64 = Field(ge=1)
    location: Location
    quantity: Quantity
    serial: Serial | None = Field(None, description="Serial items: the unit sold")
    lot_code: LotCode | None = Field(None, description="The lot, if the till scanned it")
    customer_ref: Text | None = Field(None, description="Opaque reference to the customer")
    sold_at: Time

    @property
    def fact_key(self) -> str:
        return f"sale {self.sku} {self.location} {self.sale_id} {self.line}"

    @model_validator(mode="after")
    def _one_unit_per_serial(self) -> ItemSold:
        if self.serial is not None and self.quantity != 1:
            raise ValueError(f"a line with a serial sells one unit, not quantity {self.quantity}")
        return self


class ItemReturned(EventData):
    """A customer brought an item back to a location."""

    event_type: ClassVar[EventType] = EventType.ITEM_RETURNED
    model_config = ConfigDict(json_schema_extra={"if": _HAS_SERIAL, "then": _ONE_UNIT})

    return_id: Identifier
    line: Int64 = Field(1, ge=1)
    sale_id: Identifier | None = None
    location: Location
    quantity: Quantity
    serial: Serial | None = None
    lot_code: LotCode | None = None
    reason: ReturnReason
    returned_at: Time | None = None

    @property
    def fact_key(self) -> str:
        return f"return {self.sku} {self.location} {self.return_id} {self.line}"

    @model_validator(mode="after")
    def _one_unit_per_serial(self) -> ItemReturned:
        if self.serial is not None and self.quantity != 1:
            raise ValueError(f"a line with a serial returns one unit, not quantity {self.quantity}")
        return self


class BatchRecalled(EventData):
    """An operator recalled lots and/or serial units of a product: every store must act."""

    event_type: ClassVar[EventType] = EventType.BATCH_RECALLED
    model_config = ConfigDict(
        json_schema_extra={
            "anyOf": [
                {"required": [name], "properties": {name: {"minItems": 1}}}
                for name in ("lot_codes", "serials")
            ]
        }
    )

    recall_id: Identifier
    lot_codes: list[LotCode] = Field(default_factory=list)
    serials: list[Serial] = Field(default_factory=list)
    reason: Text
    classification: Classification
    issued_by: Text
    issued_at: Time

    @model_validator(mode="after")
    def _names_something(self) -> BatchRecalled:
        if not self.lot_codes and not self.serials:
            raise ValueError("a recall must name at least one lot code or serial")
        return self


class StockQuarantined(EventData):
    """A location's stock of a recalled lot was moved out of sale."""

    event_type: ClassVar[EventType] = EventType.STOCK_QUARANTINED

    recall_id: Identifier
    location: Location
    lot_code: LotCode | None = Field(None, description="None for stock without a lot")
    quantity: Int64 = Field(ge=0, description="Units now in quarantine for this lot here")
    # The lot's account at this location, so the recall can account for every unit.
    received: Int64 | None = Field(None, ge=0, description="Units of the lot received here")
    disposed: Int64 | None = Field(
        None, ge=0, description="Units of the lot destroyed or returned to the supplier here"
    )
    sold_before_recall: Int64 | None = Field(
        None, ge=0, description="Units of the lot sold here before the recall was issued"
    )


class SoldUnit(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    serial: Serial
    lot_code: LotCode | None = None
    sale_id: Identifier | None = None
    customer_ref: Text | None = None
    location: Location | None = None
    sold_at: Time | None = None


class UnitsRecalled(EventData):
    """The serial registry's answer to a recall, in chunks of bounded size."""

    event_type: ClassVar[EventType] = EventType.UNITS_RECALLED

    recall_id: Identifier
    chunk: Int64 = Field(ge=1)
    chunks: Int64 = Field(ge=1)
    counts: dict[UnitStatus, Annotated[Int64, Field(ge=0)]] = Field(
        description="Recalled units by physical status"
    )
    unknown_serials: list[Serial] = Field(default_factory=list)
    sold_units: list[SoldUnit] = Field(default_factory=list, max_length=1000)

    @model_validator(mode="after")
    def _chunk_in_range(self, info: ValidationInfo) -> UnitsRecalled:
        if self.chunk > self.chunks and not _decoding(info):
            raise ValueError(f"chunk {self.chunk} is past the last chunk {self.chunks}")
        return self


class SaleFlagged(EventData):
    """A sale was applied but something about it needs a person: a recall, missing stock..."""

    event_type: ClassVar[EventType] = EventType.SALE_FLAGGED

    sale_id: Identifier
    line: Int64 = Field(ge=1)
    location: Location
    reason: FlagReason
    detail: Text
    quantity: Int64 = Field(1, ge=1)
    serial: Serial | None = None
    lot_code: LotCode | None = None
    recall_id: Identifier | None = Field(None, description="The recall, when reason=recalled")
    customer_ref: Text | None = None
    sold_at: Time | None = None


class ReceiptRejected(EventData):
    """(Part of) a receipt could not be booked; the rest of it was."""

    event_type: ClassVar[EventType] = EventType.RECEIPT_REJECTED

    receipt_id: Identifier
    location: Location
    reason: RejectReason
    detail: Text
    serials: list[Serial] = Field(default_factory=list, description="The serials not booked")
    quantity: Quantity | None = Field(
        None, description="Units not booked (for a receipt without serials, all of them)"
    )
    lot_code: LotCode | None = Field(None, description="The receipt's lot, if it had one")

    @model_validator(mode="after")
    def _quantity_covers_serials(self, info: ValidationInfo) -> ReceiptRejected:
        if _decoding(info):
            return self
        if self.quantity is not None and self.quantity < len(self.serials):
            raise ValueError(
                f"quantity {self.quantity} is less than the {len(self.serials)} serials listed"
            )
        return self


class LotExpiring(EventData):
    """A lot on hand at a location reached one of the warning thresholds before its expiry.

    Published once per lot, location and threshold; a lot first seen inside several
    thresholds is warned about at the nearest one only."""

    event_type: ClassVar[EventType] = EventType.LOT_EXPIRING

    location: Location
    lot_code: LotCode
    expires_on: Date = Field(description="Last day the lot may be sold")
    days_left: Int64 = Field(ge=0, description="Days from the check to expires_on")
    threshold_days: Int64 = Field(ge=0, description="The warning threshold this lot reached")
    quantity_on_hand: Quantity = Field(description="Sellable units at the location at the check")

    @model_validator(mode="after")
    def _within_threshold(self, info: ValidationInfo) -> LotExpiring:
        if self.days_left > self.threshold_days and not _decoding(info):
            raise ValueError(
                f"days_left {self.days_left} is more than threshold_days {self.threshold_days}"
            )
        return self


def _distinct(values: list[str], what: str) -> None:
    if len(set(values)) != len(values):
        repeated = sorted(v for v, n in Counter(values).items() if n > 1)
        raise ValueError(f"{what} are not distinct: {', '.join(repeated[:5])} repeated")


class CountedLot(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    lot_code: LotCode | None = Field(
        None, description="None: units whose lot was not read (spread over the lots not named)"
    )
    quantity: Int64 = Field(ge=0, le=MAX_QUANTITY, description="Units found")


class StockCounted(EventData):
    """A physical count of a SKU at a location: its on-hand becomes what was counted.

    The count covers the whole SKU there: a lot it does not name was not found. For serial
    items `serials` lists every unit found, so the serial registry can tell the missing ones
    (its units in stock at the location that the count does not list)."""

    event_type: ClassVar[EventType] = EventType.STOCK_COUNTED

    count_id: Identifier
    location: Location
    lots: list[CountedLot] = Field(max_length=10_000, description="Units found, per lot")
    serials: Serials | None = Field(
        None, description="Serial items only: every serial found, as many as the lots' units"
    )
    counted_by: Text | None = None
    counted_at: Time

    @property
    def fact_key(self) -> str:
        return f"count {self.sku} {self.location} {self.count_id}"

    @property
    def quantity(self) -> int:
        return sum(lot.quantity for lot in self.lots)

    @model_validator(mode="after")
    def _consistent(self, info: ValidationInfo) -> StockCounted:
        if _decoding(info):
            return self  # stock adds up a lot named twice; the serials are the registry's
        _distinct([lot.lot_code or "" for lot in self.lots], "lots' lot_code values")
        if self.serials is not None and len(self.serials) != self.quantity:
            raise ValueError(
                f"serials lists {len(self.serials)} serials but lots count {self.quantity}"
            )
        return self


class StockAdjusted(EventData):
    """On-hand changed outside a sale, receipt or return: written off (damaged, expired,
    stolen, given as a sample) or found."""

    event_type: ClassVar[EventType] = EventType.STOCK_ADJUSTED

    adjustment_id: Identifier
    location: Location
    quantity: Quantity
    direction: AdjustmentDirection = Field(description="out: taken off on-hand; in: added")
    reason: AdjustmentReason
    lot_code: LotCode | None = Field(None, description="The lot, if known (else FEFO for out)")
    serials: Serials | None = Field(None, description="Serial items: the units concerned")
    note: Text | None = None
    adjusted_at: Time

    @property
    def fact_key(self) -> str:
        return f"adjustment {self.sku} {self.location} {self.adjustment_id}"

    @model_validator(mode="after")
    def _serials_match_quantity(self, info: ValidationInfo) -> StockAdjusted:
        decoding = _decoding(info)
        if self.serials is not None and not decoding and len(self.serials) != self.quantity:
            raise ValueError(
                f"serials lists {len(self.serials)} serials but quantity is {self.quantity}"
            )
        return self


class StockDisposed(EventData):
    """Quarantined stock (recalled, or returned to quarantine) left the store for good:
    destroyed, or sent back to the supplier, under a reference (certificate, RMA)."""

    event_type: ClassVar[EventType] = EventType.STOCK_DISPOSED

    disposal_id: Identifier
    location: Location
    lot_code: LotCode | None = None
    quantity: Quantity
    serials: Serials | None = Field(None, description="Serial items: the units disposed of")
    method: DisposalMethod
    reference: Text = Field(description="Destruction certificate or the supplier's return number")
    recall_id: Identifier | None = Field(None, description="The recall it clears, if any")
    disposed_at: Time

    @property
    def fact_key(self) -> str:
        return f"disposal {self.sku} {self.location} {self.disposal_id}"

    @model_validator(mode="after")
    def _serials_match_quantity(self, info: ValidationInfo) -> StockDisposed:
        decoding = _decoding(info)
        if self.serials is not None and not decoding and len(self.serials) != self.quantity:
            raise ValueError(
                f"serials lists {len(self.serials)} serials but quantity is {self.quantity}"
            )
        return self


class ReorderPointSet(EventData):
    """A store set (or, with none, cleared) the on-hand below which a product is reordered."""

    event_type: ClassVar[EventType] = EventType.REORDER_POINT_SET

    location: Location
    reorder_point: Int64 | None = Field(
        None, ge=0, le=MAX_QUANTITY, description="None clears it; the latest set wins"
    )
    set_by: Text | None = None
    set_at: Time


class StockLow(EventData):
    """A product's on-hand at a location fell below its reorder point: once per crossing
    (it is armed again once on-hand is back at or above the point)."""

    event_type: ClassVar[EventType] = EventType.STOCK_LOW

    location: Location
    on_hand: Int64 = Field(ge=-MAX_INT64, description="Sellable units on hand now")
    reorder_point: Int64 = Field(ge=0)
    cause: Identifier = Field(description="The event type that took it below the point")


class TransferredLot(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    lot_code: LotCode | None = Field(
        None, description="None: the lot was not named (stock picks FEFO when shipping)"
    )
    quantity: Quantity


def _transfer_lines(lots: list[TransferredLot], serials: list[Serial] | None) -> None:
    """Rules no schema can state: they bind whoever builds a transfer; decoded, stock adds
    up a lot named twice and moves the quantities, the registry moves the serials listed."""
    _distinct([lot.lot_code or "" for lot in lots], "lots' lot_code values")
    if serials is not None:
        quantity = sum(lot.quantity for lot in lots)
        if len(serials) != quantity:
            raise ValueError(f"serials lists {len(serials)} serials but lots hold {quantity}")


class TransferShipped(EventData):
    """Goods of a SKU left `location` for `to_location`: in transit until received there.

    A lot not named is picked by stock, first expiry first; the lots it picked are what the
    transfer carries. For serial items `serials` lists every unit shipped."""

    event_type: ClassVar[EventType] = EventType.TRANSFER_SHIPPED

    transfer_id: Identifier
    location: Location = Field(description="Where the goods left from")
    to_location: Location = Field(description="Where they are going")
    lots: list[TransferredLot] = Field(
        min_length=1, max_length=10_000, description="Units shipped, per lot"
    )
    serials: Serials | None = Field(
        None, description="Serial items only: every unit shipped, as many as the lots' units"
    )
    shipped_by: Text | None = None
    shipped_at: Time

    @property
    def fact_key(self) -> str:
        return f"transfer-shipped {self.sku} {self.transfer_id}"

    @property
    def quantity(self) -> int:
        return sum(lot.quantity for lot in self.lots)

    @model_validator(mode="after")
    def _consistent(self, info: ValidationInfo) -> TransferShipped:
        if _decoding(info):
            return self  # a transfer to where it left from moves nothing in the end
        if self.to_location == self.location:
            raise ValueError(f"to_location {self.to_location} is the location shipped from")
        _transfer_lines(self.lots, self.serials)
        return self


class TransferReceived(EventData):
    """A transfer's goods of a SKU arrived at `location`: what was found, per lot (none: the
    lot was not read), and for serial items every unit found. What was shipped and is not
    listed did not arrive; what is listed and was not shipped arrived all the same."""

    event_type: ClassVar[EventType] = EventType.TRANSFER_RECEIVED

    transfer_id: Identifier
    location: Location = Field(description="Where the goods arrived")
    lots: list[TransferredLot] = Field(
        max_length=10_000, description="Units found, per lot; empty: nothing arrived"
    )
    serials: Serials | None = Field(
        None, description="Serial items only: every unit found, as many as the lots' units"
    )
    received_by: Text | None = None
    received_at: Time

    @property
    def fact_key(self) -> str:
        return f"transfer-received {self.sku} {self.transfer_id}"

    @property
    def quantity(self) -> int:
        return sum(lot.quantity for lot in self.lots)

    @model_validator(mode="after")
    def _consistent(self, info: ValidationInfo) -> TransferReceived:
        if not _decoding(info):
            _transfer_lines(self.lots, self.serials)
        return self


class WarrantyClaimed(EventData):
    """The after-sales desk took a warranty claim on a sold unit: a repair, a replacement by
    another unit in stock at the desk's location, or a refund. Applied by the serial registry
    if the unit is in warranty at `claimed_at`, or if `override_reason` says why anyway;
    otherwise answered by `warranty-claim-refused`."""

    event_type: ClassVar[EventType] = EventType.WARRANTY_CLAIMED
    model_config = ConfigDict(
        json_schema_extra={
            "if": {"properties": {"kind": {"const": ClaimKind.REPLACEMENT.value}}},
            "then": {
                "required": ["replacement_serial"],
                "properties": {"replacement_serial": {"type": "string"}},
            },
            "else": {"properties": {"replacement_serial": {"type": "null"}}},
        }
    )

    claim_id: Identifier
    serial: Serial = Field(description="The faulty unit, sold to the customer")
    location: Location = Field(description="Where the claim was taken")
    kind: ClaimKind
    replacement_serial: Serial | None = Field(
        None, description="Replacements only: the unit in stock here that the customer gets"
    )
    problem: Text | None = None
    override_reason: Text | None = Field(
        None, description="Why the claim is granted outside (or without) warranty"
    )
    claimed_by: Text | None = None
    claimed_at: Time

    @property
    def fact_key(self) -> str:
        return f"warranty-claim {self.sku} {self.claim_id}"

    def rule_broken(self) -> tuple[ClaimRefusal, str] | None:
        """The rule its schema cannot state: the registry refuses such a claim."""
        if self.replacement_serial == self.serial:
            return ClaimRefusal.REPLACEMENT_IS_CLAIMED_UNIT, (
                f"replacement_serial {self.serial} is the claimed unit itself"
            )
        return None

    @model_validator(mode="after")
    def _replacement_named(self, info: ValidationInfo) -> WarrantyClaimed:
        if self.kind is ClaimKind.REPLACEMENT and self.replacement_serial is None:
            raise ValueError("a replacement claim must name its replacement_serial")
        if self.kind is not ClaimKind.REPLACEMENT and self.replacement_serial is not None:
            raise ValueError(f"replacement_serial given for a {self.kind.value} claim")
        broken = None if _decoding(info) else self.rule_broken()
        if broken:
            raise ValueError(broken[1])
        return self


class WarrantyClaimRefused(EventData):
    """The serial registry did not apply a warranty claim: the rule it broke, in words."""

    event_type: ClassVar[EventType] = EventType.WARRANTY_CLAIM_REFUSED

    claim_id: Identifier
    serial: Serial
    location: Location
    kind: ClaimKind
    reason: ClaimRefusal
    detail: Text
    replacement_serial: Serial | None = None
    warranty_ends_on: Date | None = Field(None, description="Last day of the unit's warranty")


EVENT_MODELS: dict[EventType, type[EventData]] = {
    model.event_type: model
    for model in (
        ProductRegistered,
        ItemReceived,
        ItemSold,
        ItemReturned,
        BatchRecalled,
        StockQuarantined,
        UnitsRecalled,
        SaleFlagged,
        ReceiptRejected,
        LotExpiring,
        StockCounted,
        StockAdjusted,
        StockDisposed,
        ReorderPointSet,
        StockLow,
        WarrantyClaimed,
        WarrantyClaimRefused,
        TransferShipped,
        TransferReceived,
    )
}
