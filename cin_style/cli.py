"""The ``cin-style`` command line.

``cin-style train [HYDRA OVERRIDES...]`` composes the config in ``cin_style.conf`` (the
repository's ``conf/`` folder) with Hydra, so every key can be overridden and ``-m`` runs
sweeps. The command parses arguments and calls the library; it holds no training logic.
"""

from __future__ import annotations

import sys

USAGE = """usage: cin-style COMMAND [ARGS...]

commands:
  train     train one network on N styles (Hydra overrides, e.g. experiment=smoke)
            cin-style train experiment=smoke
            cin-style train experiment=paintings trainer.max_steps=200 data.batch_size=4
            cin-style train -m experiment=smoke loss.style_weight=0.5,2
            cin-style train --help   (Hydra's help: config groups and options)

Run 'cin-style COMMAND --help' for a command's options.
"""

CONFIG_PACKAGE = "cin_style.conf"


def _train(argv: list[str]) -> int:
    import hydra
    from hydra.core.hydra_config import HydraConfig
    from omegaconf import DictConfig

    @hydra.main(config_path=f"pkg://{CONFIG_PACKAGE}", config_name="train", version_base="1.3")
    def main(cfg: DictConfig) -> None:
        from .train import train

        train(cfg, HydraConfig.get().runtime.output_dir)

    sys.argv = ["cin-style train", *argv]
    main()
    return 0


COMMANDS = {"train": _train}


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help", "help"):
        print(USAGE)
        return 0
    command, rest = argv[0], argv[1:]
    if command not in COMMANDS:
        print(f"cin-style: unknown command {command!r}\n\n{USAGE}", file=sys.stderr)
        return 2
    return COMMANDS[command](rest)


if __name__ == "__main__":
    sys.exit(main())
