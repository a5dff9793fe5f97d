"""Zhongshu (中枢): a city-level permissioned blockchain hub on national cryptography."""

__version__ = "0.1.0"
