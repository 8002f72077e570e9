"""Monitoring: sentiment and volume shifts per group, the champion's health over time, and alerts."""
