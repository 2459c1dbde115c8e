"""The stateful side of wireless decoding, still sans-I/O: per-meter keys, compact layouts and the
diagnosis counts that tell a user why a meter does not decode.

``WirelessDecoder.decode(data)`` runs ``decode_wireless`` with the configured key source, then

* tries the key that last worked for the meter first (a key is matched once per meter),
* rebuilds compact frames with a layout learnt from an earlier full or format frame of the same
  meter, or else with a layout known in advance for the meter's manufacturer (``known_layouts``,
  ``{manufacturer: {signature: CompactLayout}}``: the package ships those that public full
  frames establish), and raises ``LayoutUnknownError`` when there is neither,
* cuts a payload whose last encrypted block was lost back to its whole records,
* counts every outcome per meter: decoded, missing key, wrong key, damaged, unsupported,
  malformed, layout unknown. The time a telegram was heard is given by the caller
  (``received_at``): the core never reads a clock.

A damaged or malformed frame is counted for its meter only when the address is trustworthy:
the CRC of the block holding it passed, or the meter has already been heard. Other such frames
are counted in ``unattributed``, so noise cannot invent meters. What is kept per meter is bounded
(``max_meters``, least recently heard first out), as a receiver also hears the neighbours.
"""

from collections import OrderedDict

from mbusgw.core.compact import CompactLayout, rebuild_full_frame, split_compact, \
    whole_records_length
from mbusgw.core.errors import (
    ChecksumError,
    DecodeError,
    DecryptError,
    FrameError,
    LayoutUnknownError,
    MBusError,
    MissingKeyError,
    UnsupportedError,
)
from mbusgw.core.crypto import make_key
from mbusgw.core.records import Header, decode_application
from mbusgw.core.wmbus import decode_wireless, meter_from_dll

# What the record decoder makes of each wireless payload kind: the CI it decodes the payload
# as (the TPL header has been taken off already). Other kinds stay raw.
APPLICATION_CI = {"records": 0x78, "application-error": 0x70, "alarm": 0x71}

OUTCOMES = ("decoded", "missing_key", "wrong_key", "damaged", "unsupported", "malformed",
            "layout_unknown")

# How many recent full frames per meter are kept to learn compact layouts from.
FULL_FRAMES_KEPT = 4
# Outcomes that may open a diagnosis for a meter not heard before (its telegram was whole).
NEW_METER_OUTCOMES = ("decoded", "missing_key", "wrong_key", "unsupported", "layout_unknown")


def outcome_of(error) -> str:
    """The diagnosis category of a decoding error."""
    if isinstance(error, MissingKeyError):
        return "missing_key"
    if isinstance(error, DecryptError):
        return "wrong_key"
    if isinstance(error, FrameError):
        return "damaged"
    if isinstance(error, LayoutUnknownError):
        return "layout_unknown"
    if isinstance(error, UnsupportedError):
        return "unsupported"
    return "malformed"


def decode_records(telegram):
    """The records of a decrypted telegram (``mbusgw.core.records.Telegram``), or None when its
    payload holds no EN 13757-3 application layer (manufacturer specific, COSEM, none)."""
    ci = APPLICATION_CI.get(telegram.payload_kind)
    if ci is None:
        return None
    meter = telegram.meter
    tpl = telegram.tpl
    if tpl is not None and tpl.access_number is not None:
        access, status, signature = tpl.access_number, tpl.status, tpl.configuration
    else:  # no TPL header: the ELL's access number stays in the link object
        access = status = signature = None
    header = Header(meter.id, meter.manufacturer, meter.version, meter.device_type, access,
                    status, signature, telegram.ci)
    return decode_application(ci, telegram.payload, header)


cdef object _prepared(keys):
    """A fixed key source as key objects, made once (an OpenSSL context per key)."""
    if keys is None or callable(keys):
        return keys
    if isinstance(keys, (list, tuple)):
        return [make_key(k) for k in keys]
    return [make_key(keys)]


cdef class MeterDiagnosis:
    """What happened to one meter's telegrams."""
    cdef readonly object meter
    cdef readonly dict counts
    cdef readonly str last_outcome
    cdef readonly str last_error
    cdef readonly object last_heard, last_decoded, rssi

    def __init__(self, meter):
        self.meter = meter
        self.counts = dict.fromkeys(OUTCOMES, 0)
        self.last_outcome = None
        self.last_error = None

    cdef void record(self, str outcome, error, received_at, rssi):
        self.counts[outcome] += 1
        self.last_outcome = outcome
        self.last_error = None if error is None else str(error)
        if received_at is not None:
            self.last_heard = received_at
            if outcome == "decoded":
                self.last_decoded = received_at
        if rssi is not None:
            self.rssi = rssi

    @property
    def status(self) -> str:
        """The last outcome, in the words a user needs: "ok", "wrong key", "missing key",
        "damaged", "unsupported", "malformed", "layout unknown"."""
        if self.last_outcome is None:
            return "not heard"
        return "ok" if self.last_outcome == "decoded" else self.last_outcome.replace("_", " ")

    def to_dict(self) -> dict:
        return {"meter": self.meter.to_dict(), "status": self.status, "counts": dict(self.counts),
                "last_error": self.last_error, "last_heard": self.last_heard,
                "last_decoded": self.last_decoded, "rssi": self.rssi}


cdef class WirelessDecoder:
    """Decodes a stream of wireless telegrams; see the module docstring."""
    cdef object _keys
    cdef readonly str frame_format
    cdef object _diagnoses, _key_for_meter, _full_frames, _layouts
    cdef dict _known_layouts
    cdef readonly dict unattributed
    cdef readonly int max_meters

    def __init__(self, keys=None, str frame_format="auto", int max_meters=10000,
                 known_layouts=None):
        self._keys = _prepared(keys)
        self._known_layouts = dict(known_layouts or {})
        self.frame_format = frame_format
        self.max_meters = max_meters
        self._diagnoses = OrderedDict()
        self._key_for_meter = OrderedDict()
        self._full_frames = OrderedDict()
        self._layouts = OrderedDict()
        self.unattributed = dict.fromkeys(OUTCOMES, 0)

    def set_keys(self, keys) -> None:
        """Replace the key source (the key store changed); cached key matches are dropped."""
        self._keys = _prepared(keys)
        self._key_for_meter.clear()

    def diagnosis(self, meter):
        """The diagnosis of one meter, or None when it was never heard."""
        return self._diagnoses.get(meter)

    def diagnoses(self) -> dict:
        return dict(self._diagnoses)

    def add_layout(self, meter, layout) -> None:
        """Make a compact layout known for a meter before any full frame of it is heard (a
        layout its manufacturer documents, or one kept from an earlier run)."""
        self._keep(self._layouts, meter, self._layouts.get(meter) or {})[layout.signature] = layout

    def layouts(self, meter) -> dict:
        """The compact layouts known for a meter, by format signature."""
        return dict(self._layouts.get(meter, {}))

    def _candidates(self, meter):
        found = self._key_for_meter.get(meter)
        keys = self._keys
        if keys is None:
            rest = []
        elif callable(keys):
            rest = list(keys(meter) or ())
        else:
            rest = keys
        if found is None:
            return rest
        return [found] + [k for k in rest if k is not found and k != found]

    def decode(self, data, *, rssi=None, received_at=None):
        """Decode one telegram; raise the typed error after counting it."""
        try:
            telegram = decode_wireless(data, self._candidates, self.frame_format)
            try:
                telegram = self._application(telegram)
            except MBusError as error:
                error.meter = telegram.meter
                raise
        except MBusError as error:
            self._count_failure(error, data, received_at, rssi)
            raise
        telegram.rssi = rssi
        if telegram.key is not None:
            self._keep(self._key_for_meter, telegram.meter, telegram.key)
        self._diagnosis_for(telegram.meter).record("decoded", None, received_at, rssi)
        return telegram

    cdef object _application(self, telegram):
        kind = telegram.payload_kind
        if telegram.tpl is not None and telegram.tpl.truncated:
            payload = telegram.payload
            telegram = telegram.with_payload(payload[:whole_records_length(payload)], kind)
        if kind == "records":
            self._remember_full_frame(telegram.meter, telegram.payload)
        elif kind == "format":
            layout = CompactLayout.from_format_frame(telegram.payload)
            self.add_layout(telegram.meter, layout)
        elif kind == "compact":
            records = rebuild_full_frame(self._layout_for(telegram), telegram.payload)
            telegram = telegram.with_payload(records, "records")
        telegram.application = decode_records(telegram)
        return telegram

    cdef void _remember_full_frame(self, meter, bytes payload):
        frames = self._keep(self._full_frames, meter, self._full_frames.get(meter) or [])
        if payload in frames:
            return
        frames.append(payload)
        if len(frames) > FULL_FRAMES_KEPT:
            del frames[0]

    cdef object _layout_for(self, telegram):
        signature = split_compact(telegram.payload)[0]
        meter = telegram.meter
        known = self._keep(self._layouts, meter, self._layouts.get(meter) or {})
        layout = known.get(signature)
        if layout is not None:
            return layout
        for payload in self._full_frames.get(meter, ()):
            try:
                candidate = CompactLayout.from_full_frame(payload)
            except DecodeError:
                continue
            known[candidate.signature] = candidate
            if candidate.signature == signature:
                return candidate
        layout = self._known_layouts.get(meter.manufacturer, {}).get(signature)
        if layout is not None:
            return layout
        raise LayoutUnknownError(
            f"compact frame with format signature 0x{signature:04X} from {meter}: its record "
            "layout is not known yet; it is learnt from a full frame of this meter", 0,
            signature)

    cdef void _count_failure(self, error, data, received_at, rssi):
        outcome = outcome_of(error)
        meter = getattr(error, "meter", None)
        if meter is None:
            meter = self._meter_of_damaged(error, data)
        elif outcome not in NEW_METER_OUTCOMES and meter not in self._diagnoses:
            meter = None
        if meter is None:
            self.unattributed[outcome] += 1
            return
        self._diagnosis_for(meter).record(outcome, error, received_at, rssi)

    cdef object _meter_of_damaged(self, error, data):
        """The meter of a frame that failed in its CRCs, when its address can be trusted."""
        if not isinstance(error, FrameError):
            return None
        try:
            meter = meter_from_dll(data)
        except MBusError:
            return None
        if isinstance(error, ChecksumError) and error.block is not None and error.block >= 1:
            return meter  # the CRC of the block holding the address passed
        return meter if meter in self._diagnoses else None

    cdef MeterDiagnosis _diagnosis_for(self, meter):
        found = self._diagnoses.get(meter)
        return self._keep(self._diagnoses, meter, found or MeterDiagnosis(meter))

    cdef object _keep(self, table, meter, value):
        """Store ``value`` as the most recent entry of a per-meter table, evicting the oldest."""
        table[meter] = value
        table.move_to_end(meter)
        if len(table) > self.max_meters:
            table.popitem(last=False)
        return value
