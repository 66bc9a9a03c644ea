"""stair-stepper: why Python service memory climbs in stair steps, and what the allocator does."""


def _version() -> str:
    """The one version, pyproject.toml's: from the installed package's metadata, or, run from
    a checkout without installing (``PYTHONPATH=src``), from the checkout's pyproject.toml."""
    from importlib import metadata

    try:
        return metadata.version("stair-stepper")
    except metadata.PackageNotFoundError:
        import tomllib
        from pathlib import Path

        pyproject = Path(__file__).resolve().parents[2] / "pyproject.toml"
        try:
            return tomllib.loads(pyproject.read_text())["project"]["version"]
        except (OSError, KeyError, ValueError):
            return "unknown"


def __getattr__(name: str):
    if name == "__version__":  # on demand: importlib.metadata costs a start-up 18 ms
        return _version()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def _find_checkout_analysis() -> None:
    """Run from a checkout without installing (``PYTHONPATH=src``, as in `nix develop`), the
    repository's top-level ``analysis/`` is this package's ``analysis`` subpackage, exactly as
    an install maps it (pyproject.toml: package-dir). Only that one name is mapped: nothing
    else of the repository becomes part of the package."""
    import importlib.util
    import sys
    from pathlib import Path

    here = Path(__file__).resolve().parent
    checkout = here.parents[1] / "analysis"
    if (here / "analysis").is_dir() or not (checkout / "summary.py").is_file():
        return  # installed (analysis inside the package), or not a checkout

    class _CheckoutAnalysis:  # a meta path finder (no importlib.abc base: it costs 10 ms)
        def find_spec(self, fullname, path=None, target=None):
            if fullname != f"{__name__}.analysis":
                return None
            return importlib.util.spec_from_file_location(
                fullname, checkout / "__init__.py", submodule_search_locations=[str(checkout)]
            )

    if not any(type(f).__name__ == "_CheckoutAnalysis" for f in sys.meta_path):
        sys.meta_path.append(_CheckoutAnalysis())


_find_checkout_analysis()
