"""The five-line route of the docs (docs/routes.md, the README), as a file a test writes."""

HELLO_ROUTE = """from dialtone import webhook
from twilio.twiml.messaging_response import MessagingResponse


@webhook("/hello")
def hello(form):
    reply = MessagingResponse()
    reply.message(f"Hi {form['From']}!")
    return reply
"""
