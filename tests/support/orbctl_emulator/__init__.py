"""A Docker- or Incus-backed emulator of OrbStack's ``orbctl``/``orb`` CLI, for tests on Linux."""

from .shims import install_shims

__all__ = ["install_shims"]
