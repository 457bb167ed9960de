"""Shipped hardware profiles (YAML files beside this module); load them with ``energysim.load_profile``."""
