"""`python -m workers [flags]`: the same as `evalsvc worker [flags]`."""

import sys

from evalsvc.cli import main

if __name__ == "__main__":
    sys.exit(main(["worker", *sys.argv[1:]]))
