"""The local sandbox: a stand-in for Twilio that runs on loopback."""
