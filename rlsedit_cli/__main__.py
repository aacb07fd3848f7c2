"""``python -m rlsedit_cli``: the same as the ``rlsedit`` command."""

import sys

from rlsedit_cli import main

sys.exit(main())
