"""Command line: busybox-style dispatch and the command set shared with the console."""
