"""The bot's logic, as plain functions: SMS rules, carrier keywords and opt-outs, the voice menu,
texting through Twilio."""
