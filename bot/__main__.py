"""`python -m bot` is the same as the `rollcall` command."""

from bot.cli import main

raise SystemExit(main())
