"""ogcflow: an OGC API - Processes server for Earth-observation processing."""

__version__ = "0.1.0"
