"""``python -m qmlp_nncf.cli ...`` (torchrun's ``-m``) is the ``qmlp`` command."""
import sys

from . import main

sys.exit(main())
