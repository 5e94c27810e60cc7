from __future__ import annotations

from devservices.cli import main

raise SystemExit(main())
