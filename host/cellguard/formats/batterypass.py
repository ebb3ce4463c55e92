"""Names in a cellguard Battery Pass document (``passport.py`` writes it,
``passport_report.py`` renders it for a person)."""

MODEL = "urn:samm:io.BatteryPass.Performance:1.2.1#PerformanceAndDurability"
EXTENSION = "cellguardExtension"
"""The top-level block with cellguard's exact data beside the model's properties."""
HISTOGRAM = "timeAtStateHistogram"
"""The extension key of the SoC x temperature time histogram (seconds per bin)."""
