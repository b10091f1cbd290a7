"""The five-line route of the docs (docs/routes.md, the README), and a routes directory to add
it to."""

import shutil
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]

HELLO_ROUTE = """from dialtone import webhook
from twilio.twiml.messaging_response import MessagingResponse


@webhook("/hello")
def hello(form):
    reply = MessagingResponse()
    reply.message(f"Hi {form['From']}!")
    return reply
"""


def copy_routes(into: Path) -> Path:
    """A copy of the project's routes directory in `into`, which a test may add files to."""
    directory = into / "routes"
    shutil.copytree(REPO / "routes", directory, ignore=shutil.ignore_patterns("__pycache__"))
    return directory
