"""stair-stepper: why Python service memory climbs in stair steps, and what the allocator does."""

__version__ = "0.1.0"

# Run from a checkout without installing (PYTHONPATH=src, as in `nix develop`), the
# repository's analysis/ folder is this package's `analysis` subpackage, exactly as
# the installed package maps it (pyproject.toml: package-dir).
from pathlib import Path as _Path  # noqa: E402

_checkout_analysis = _Path(__file__).resolve().parents[2] / "analysis"
if (_checkout_analysis / "summary.py").is_file():
    __path__.append(str(_checkout_analysis.parent))  # noqa: F821 - the package's own __path__
del _Path, _checkout_analysis
