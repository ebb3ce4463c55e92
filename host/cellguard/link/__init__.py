"""The host end of the serial link: framing, the board client, finding ports.

``framing`` splits the byte stream into COBS frames; ``client`` speaks the
protocol (requests, telemetry, units from wire integers to SI floats);
``ports`` lists serial ports and asks each whether a board is there.
"""
