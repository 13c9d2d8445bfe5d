"""``python -m ollama_async.testing`` (see :mod:`._cli`)."""

from ._cli import main

raise SystemExit(main())
