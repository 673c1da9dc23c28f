"""Miner drivers, one module per firmware family, and the fleet fan-out."""
