"""The inspector `make dev` serves on 127.0.0.1: a live timeline of every webhook, replay, and a
phone in the browser (sandbox mode). The app child feeds it through dialtone.devloop.capture."""
