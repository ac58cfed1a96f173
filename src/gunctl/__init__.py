"""gunctl: a controller for percussive massage guns over Bluetooth LE.

gunctl is a device controller, not medical advice.
"""

__version__ = "0.1.0"
