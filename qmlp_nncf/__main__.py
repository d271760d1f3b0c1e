"""``python -m qmlp_nncf ...`` is the ``qmlp`` command."""
import sys

from .cli import main

sys.exit(main())
