"""``python -m unipixel.synth ...`` (same as ``unipixel synth ...``)."""

from .cli import main

raise SystemExit(main())
