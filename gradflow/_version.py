"""gradflow's version, from the installed distribution's metadata."""

from __future__ import annotations

import importlib.metadata

# The distribution is "gradflow-jax" (the index's "gradflow" is another project);
# its version is written once, in pyproject.toml.
_DISTRIBUTION = "gradflow-jax"


def _version() -> str:
    # Only our own distribution's metadata: a stale install of the distribution
    # named "gradflow" in the same environment would otherwise give its version.
    try:
        return importlib.metadata.version(_DISTRIBUTION)
    except importlib.metadata.PackageNotFoundError:
        # a source tree on sys.path that was never installed: unknown, not a guess
        return "0+unknown"


__version__ = _version()
