"""The sandbox phone: its HTTP API, its line in the carrier, the terminal client and view."""
