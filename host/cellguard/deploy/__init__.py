"""Build and deploy: the firmware compiled for a board, its manifest, the A/B slots."""
