"""Transports to devices, chosen by URL: TPM device, simulator socket, serial, I2C."""
