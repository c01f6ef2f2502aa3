"""The load capture of the end-to-end tests, shared here too."""

from tests.e2e.conftest import load_capture  # noqa: F401 - a fixture
