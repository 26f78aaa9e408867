"""Instrument drivers (pyvisa / nidaqmx) and, in instruments.sim, the simulated bench."""
