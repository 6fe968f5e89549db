"""Entry point: ``python main.py fit|test --config configs/...yaml``."""

from lit_edit.cli import main

if __name__ == "__main__":
    main()
