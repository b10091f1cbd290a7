"""`make bench`: Dialtone against its ceiling and the usual Flask/gunicorn alternative."""
