"""What Twilio's network does: webhooks to the app, the TwiML engine, texts, calls, queues, STOP."""
