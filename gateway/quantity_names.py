"""What a person calls a stored quantity, in the report languages (English, Swedish, German).

The store names a series by the decoder's quantity (``flow_temperature``) and a description
of what sets it apart (``maximum, storage 1, tariff 2, per hour``; see
``gateway.store.telegrams.describe``). ``quantity_label`` turns both into words
("Flow temperature, maximum, storage 1"); a quantity without a name here is written in words
from its identifier, so no identifier reaches a reader.
"""

from __future__ import annotations

LANGUAGES = ("en", "sv", "de")

# quantity (``Quantity`` name in lower case) -> (English, Swedish, German)
NAMES: dict[str, tuple[str, str, str]] = {
    "energy": ("Energy", "Energi", "Energie"),
    "volume": ("Volume", "Volym", "Volumen"),
    "mass": ("Mass", "Massa", "Masse"),
    "on_time": ("On time", "Påslagen tid", "Einschaltdauer"),
    "operating_time": ("Operating time", "Drifttid", "Betriebsdauer"),
    "power": ("Power", "Effekt", "Leistung"),
    "volume_flow": ("Flow", "Flöde", "Durchfluss"),
    "mass_flow": ("Mass flow", "Massflöde", "Massenstrom"),
    "flow_temperature": ("Flow temperature", "Framledningstemperatur", "Vorlauftemperatur"),
    "return_temperature": ("Return temperature", "Returtemperatur", "Rücklauftemperatur"),
    "temperature_difference": (
        "Temperature difference",
        "Temperaturdifferens",
        "Temperaturdifferenz",
    ),
    "external_temperature": ("Outside temperature", "Utetemperatur", "Außentemperatur"),
    "temperature": ("Temperature", "Temperatur", "Temperatur"),
    "pressure": ("Pressure", "Tryck", "Druck"),
    "time_point": ("Date and time", "Datum och tid", "Datum und Uhrzeit"),
    "time_point_second": ("Date and time", "Datum och tid", "Datum und Uhrzeit"),
    "hca": ("Heat cost allocation", "Värmekostnadsfördelning", "Heizkostenverteilung"),
    "averaging_duration": ("Averaging time", "Medelvärdestid", "Mittelungsdauer"),
    "actuality_duration": ("Age of the value", "Värdets ålder", "Alter des Wertes"),
    "fabrication_number": ("Serial number", "Serienummer", "Fabrikationsnummer"),
    "enhanced_identification": ("Identification", "Identifiering", "Identifikation"),
    "bus_address": ("Bus address", "Bussadress", "Busadresse"),
    "credit": ("Credit", "Kredit", "Guthaben"),
    "debit": ("Debit", "Debet", "Schuld"),
    "access_number": ("Access number", "Åtkomstnummer", "Zugriffsnummer"),
    "device_type": ("Device type", "Enhetstyp", "Gerätetyp"),
    "manufacturer": ("Manufacturer", "Tillverkare", "Hersteller"),
    "model_version": ("Model version", "Modellversion", "Modellversion"),
    "hardware_version": ("Hardware version", "Hårdvaruversion", "Hardwareversion"),
    "firmware_version": ("Firmware version", "Firmwareversion", "Firmwareversion"),
    "software_version": ("Software version", "Mjukvaruversion", "Softwareversion"),
    "customer_location": ("Customer location", "Kundens plats", "Kundenstandort"),
    "customer": ("Customer", "Kund", "Kunde"),
    "error_flags": ("Error flags", "Felflaggor", "Fehlerflags"),
    "error_mask": ("Error mask", "Felmask", "Fehlermaske"),
    "digital_output": ("Digital output", "Digital utgång", "Digitalausgang"),
    "digital_input": ("Digital input", "Digital ingång", "Digitaleingang"),
    "baud_rate": ("Baud rate", "Överföringshastighet", "Baudrate"),
    "response_delay_time": ("Response delay", "Svarsfördröjning", "Antwortverzögerung"),
    "storage_interval": ("Storage interval", "Lagringsintervall", "Speicherintervall"),
    "duration_since_readout": (
        "Time since last readout",
        "Tid sedan senaste avläsning",
        "Zeit seit letzter Auslesung",
    ),
    "voltage": ("Voltage", "Spänning", "Spannung"),
    "current": ("Current", "Ström", "Strom"),
    "reset_counter": ("Reset counter", "Återställningsräknare", "Rücksetzzähler"),
    "cumulation_counter": ("Cumulation counter", "Ackumuleringsräknare", "Kumulationszähler"),
    "battery_operating_time": ("Battery operating time", "Batteridrifttid", "Batterielaufzeit"),
    "battery_change_time": ("Battery changed", "Batteribyte", "Batteriewechsel"),
    "battery_remaining": ("Battery remaining", "Återstående batteri", "Batterierestlaufzeit"),
    "rf_level": ("Radio level", "Radionivå", "Funkpegel"),
    "relative_humidity": ("Relative humidity", "Relativ fuktighet", "Relative Luftfeuchte"),
    "manufacturer_specific": ("Manufacturer data", "Tillverkardata", "Herstellerdaten"),
    "manufacturer_data": ("Manufacturer data", "Tillverkardata", "Herstellerdaten"),
    "dimensionless": ("Number", "Tal", "Zahl"),
    "plain_text": ("Value", "Värde", "Wert"),  # its unit is the meter's own text ("%RH")
    "unknown": ("Unknown quantity", "Okänd storhet", "Unbekannte Größe"),
}

# words of a series description (function, storage, tariff, subunit, common modifiers)
WORDS: dict[str, tuple[str, str, str]] = {
    "maximum": ("maximum", "max", "Maximum"),
    "minimum": ("minimum", "min", "Minimum"),
    "error state": ("during an error", "vid fel", "im Fehlerzustand"),
    "storage": ("storage", "lagring", "Speicher"),
    "tariff": ("tariff", "tariff", "Tarif"),
    "subunit": ("subunit", "underenhet", "Untereinheit"),
    "per hour": ("per hour", "per timme", "pro Stunde"),
    "per day": ("per day", "per dag", "pro Tag"),
    "per month": ("per month", "per månad", "pro Monat"),
    "per year": ("per year", "per år", "pro Jahr"),
    "positive accumulation": ("forward", "framåt", "vorwärts"),
    "negative accumulation": ("backward", "bakåt", "rückwärts"),
    "start date of": ("start date", "startdatum", "Startdatum"),
}


def _column(language: str) -> int:
    return LANGUAGES.index(language) if language in LANGUAGES else 0


def quantity_name(quantity: str, language: str = "en") -> str:
    """The quantity alone, in words ("flow_temperature" -> "Flow temperature")."""
    names = NAMES.get(quantity)
    if names is not None:
        return names[_column(language)]
    words = quantity.replace("_", " ").strip()
    return words[:1].upper() + words[1:]


def description_words(description: str, language: str = "en") -> str:
    """A series description in words of ``language`` ("storage 1, tariff 2" in German:
    "Speicher 1, Tarif 2"); parts without a translation stay as they are (already words)."""
    column = _column(language)
    parts = []
    for part in filter(None, (p.strip() for p in description.split(","))):
        head, _, number = part.rpartition(" ")
        if head in WORDS and number.isdigit():
            parts.append(f"{WORDS[head][column]} {number}")
        else:
            parts.append(WORDS[part][column] if part in WORDS else part.replace("_", " "))
    return ", ".join(parts)


def quantity_label(quantity: str, description: str = "", language: str = "en") -> str:
    """The quantity with what sets the series apart, as a reader wants it:
    "Energy", "Volume, storage 1", "Power, maximum, tariff 2"."""
    name = quantity_name(quantity, language)
    rest = description_words(description, language)
    return f"{name}, {rest}" if rest else name
