"""``python -m zhongshu`` runs the CLI (zhongshu.cli.main); Ctrl-C while it loads is reported too."""

import sys

# Guarded: a worker process the node spawns (``multiprocessing`` "spawn") imports this module
# again as ``__mp_main__``, and must not run the CLI.
if __name__ == "__main__":
    try:
        from zhongshu.cli.main import main
    except KeyboardInterrupt:
        sys.stderr.write("interrupted\n")
        raise SystemExit(130) from None

    raise SystemExit(main())
