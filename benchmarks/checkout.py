"""Importing genossa from this source checkout, for benchmarks run where it is not installed
(the GPU image has torch and triton but no registry to install from).

The installed package maps the top-level kernels/ folder to `genossa.kernels`; from a checkout
that mapping is made here by hand.
"""
import importlib.util
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def use_checkout() -> None:
    """Make `import genossa` and `import genossa.kernels` work from ROOT."""
    sys.path.insert(0, str(ROOT))
    import genossa

    try:
        import genossa.kernels  # noqa: F401  (installed: the mapping exists)
    except ImportError:
        spec = importlib.util.spec_from_file_location(
            "genossa.kernels", ROOT / "kernels" / "__init__.py", submodule_search_locations=[str(ROOT / "kernels")]
        )
        module = importlib.util.module_from_spec(spec)
        sys.modules["genossa.kernels"] = module
        spec.loader.exec_module(module)
        genossa.kernels = module
