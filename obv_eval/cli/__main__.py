"""`python -m obv_eval.cli`: the `obv-eval` command."""

import sys

from obv_eval.cli import entry_point

sys.exit(entry_point())
