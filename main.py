"""Entry point: ``python main.py fit|test --config configs/...yaml``. ``python main.py --help`` alone is answered
without importing Lightning (``lit_edit.cli_help.top_level_parser``)."""

import sys

from lit_edit.cli_help import asks_for_top_level_help, top_level_parser

if __name__ == "__main__":
    if asks_for_top_level_help(sys.argv[1:]):
        top_level_parser().parse_args(sys.argv[1:])
    else:
        from lit_edit.cli import main

        main()
