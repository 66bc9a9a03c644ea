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
