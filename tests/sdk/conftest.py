"""The SDK's end-to-end tests run against the same real stack as tests/integration."""

from tests.integration.conftest import stack

__all__ = ["stack"]
