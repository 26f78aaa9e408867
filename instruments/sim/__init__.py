"""The simulated bench: one fluid-line model behind protocol-exact emulators on real transports."""
