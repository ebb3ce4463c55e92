"""cellguard host tooling: talk to boards, log, export, plot and simulate.

Host units are SI floats (V, A, degC, s) and SoC in percent; current is positive
when charging. The wire carries integers (mV, mA, 0.1 degC, ms); conversion
happens in :mod:`cellguard.link.client`.
"""

__version__ = "0.1.0"
