"""The request path: route registration, the signature plugin, API auth and limits, serving and
graceful stop, the access log."""
