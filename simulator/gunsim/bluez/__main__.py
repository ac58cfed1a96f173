"""``python -m gunsim.bluez``: the same as ``gunsim bluez``."""

from gunsim.bluez.cli import bluez

if __name__ == "__main__":
    bluez(prog_name="python -m gunsim.bluez")
