"""``python -m edm_se <command> ...`` (and ``torchrun ... -m edm_se train ...``): the ``edm-se`` command line."""

from edm_se.cli import main

if __name__ == "__main__":
    main()
