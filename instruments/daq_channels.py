"""Names of the DAQ's output roles in the station file (``[instruments.daq.options.channels]``).

Why a module of its own: the station-file validator, the DAQ driver and the simulated device must
agree on these names, and validating a station must not import nidaqmx (about a quarter of a
second, paid by every command that loads rig.toml) just to learn them.
"""

VALVES = ("occlusion_valve", "leak_valve", "disconnect_valve")  # digital lines, high = fault
KINK = "kink_valve"  # analog output, 0..100 % restriction
