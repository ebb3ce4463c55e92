"""Offline estimation on the host: cell models, their fitting and the firmware's estimator.

``cellmodel`` is a cell's ECM (cell.json); ``characterize`` fits one from pulse
and low-rate tests; ``estimate`` runs the firmware's own estimator over a
recorded trace; ``pybamm_traces`` makes physics-based reference traces.
"""
