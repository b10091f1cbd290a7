"""The sandbox's side of Twilio's REST API: resources, errors, OpenAPI checks, failures on demand."""
