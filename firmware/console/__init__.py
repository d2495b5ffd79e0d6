"""Serial console: a technician's shell on the board UART, with the CLI's command set."""
