"""Python client of the Zhongshu gateway."""

from zhongshu.sdk.client import ApiError, Client, sign_tx

__all__ = ["ApiError", "Client", "sign_tx"]
