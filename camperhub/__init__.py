"""Camper Hub: energy and whereabouts of a solar camper, from Modbus register to tenant page."""

__version__ = "0.1.0"
