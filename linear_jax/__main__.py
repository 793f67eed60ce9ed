"""`python -m linear_jax COMMAND [flags]`: the `linear-jax` command (see `linear_jax/cli.py`)."""

import sys

from linear_jax import cli

if __name__ == '__main__':
  sys.exit(cli.main())
