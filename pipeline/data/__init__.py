"""Data in: importing review files and the synthetic demo stream."""
