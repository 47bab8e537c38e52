"""``python -m aiorunlist``: the command line (see ``python -m aiorunlist --help``)."""

from aiorunlist._cli import main

if __name__ == "__main__":
    main()
