"""One module per `lift3d` subcommand (see pipelines/cli.py for the contract)."""
