"""einforge: design and simulate attention accelerators from cascades of extended Einsums.

The application layer: the ``einforge`` command line and a small façade over the packages.

    >>> import einforge
    >>> c = einforge.library.get("attention_1pass")
    >>> einforge.passes(c, "M")
    1
"""

from einsum import Cascade, EinforgeError, EinsumError, library, parse, passes
from golden import run

__version__ = "0.1.0"

__all__ = ["Cascade", "EinforgeError", "EinsumError", "library", "parse", "passes", "run"]
