"""``python -m ablation``: see ``ablation.ablate``."""

import sys

from ablation.ablate import main

sys.exit(main())
