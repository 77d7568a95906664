from pyinfra import config

config.SUDO_USER = "root"  # loaded as the CLI loads config.py next to the deploy
