"""The record: every message, call and status Dialtone saw or sent, and who opted out."""
