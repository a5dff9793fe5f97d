"""The ``zhongshu`` command."""
