"""Daemon core: service supervision, signals, sd_notify, logging and the single-instance lock."""
