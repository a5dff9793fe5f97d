"""``python -m zhongshu`` runs the CLI (zhongshu.cli.main); Ctrl-C while it loads is reported too."""

import sys

try:
    from zhongshu.cli.main import main
except KeyboardInterrupt:
    sys.stderr.write("interrupted\n")
    raise SystemExit(130) from None

raise SystemExit(main())
