"""`python -m evalsvc ...`: the same as the `evalsvc` command (e.g. `python -m evalsvc worker`)."""

import sys

from evalsvc.cli import main

if __name__ == "__main__":
    sys.exit(main())
