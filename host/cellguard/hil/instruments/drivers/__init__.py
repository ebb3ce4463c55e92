"""One module per instrument family; ``DRIVERS`` maps a rig file's driver name to its class."""
