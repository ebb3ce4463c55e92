"""Looking at the data: plots (``plot``), run reports (``report``), the live ``monitor``."""
