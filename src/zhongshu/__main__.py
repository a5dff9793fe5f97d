"""``python -m zhongshu`` runs the CLI."""

from zhongshu.cli.main import main

main()
