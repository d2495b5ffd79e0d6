"""The steps behind build.py, one module per job; build.py only reads the command line.

Standard library only: build.py runs them under the system python3 before any virtualenv exists.
"""
