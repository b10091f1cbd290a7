"""`dialtone dev` (make dev): serve the app with reload, open a tunnel, point the number at it,
restore on exit.

With TWILIO_ACCOUNT_SID and TWILIO_AUTH_TOKEN it works on your real number through an ngrok
tunnel (or --public-url). Without them it runs against the local sandbox: no account, no
internet. Either way the same code finds the number, saves it, points it and puts it back.
"""

from __future__ import annotations

import argparse

from dialtone.settings import route_path

SUMMARY = "the dev loop: serve with reload, tunnel or sandbox, point the number, restore on exit"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The options of `dialtone dev`."""
    parser.add_argument(
        "--public-url",
        metavar="URL",
        help="use this https URL (another tunnel, a public host) instead of opening ngrok",
    )
    only = parser.add_mutually_exclusive_group()
    only.add_argument("--voice-only", action="store_true", help="point only the voice webhook")
    only.add_argument("--sms-only", action="store_true", help="point only the SMS webhook")
    only.add_argument(
        "--no-update", action="store_true", help="leave the number's webhooks as they are"
    )
    parser.add_argument(
        "--tunnel",
        action="store_true",
        help="open the ngrok tunnel even when TWILIO_API_URL is on this machine",
    )
    parser.add_argument(
        "--sms-path",
        metavar="PATH",
        type=route_path,
        help="point the number's SMS webhook at this route (default: SMS_PATH or /sms_url)",
    )
    parser.add_argument(
        "--voice-path",
        metavar="PATH",
        type=route_path,
        help="point the number's voice webhook at this route (default: VOICE_PATH or /voice_url)",
    )
    parser.add_argument("--no-reload", action="store_true", help="do not restart on edits")
    parser.add_argument(
        "--no-inspector",
        action="store_true",
        help="do not serve the inspector page (timeline, replay, browser phone)",
    )


def run(args: argparse.Namespace) -> int:
    """Run the dev loop until Ctrl-C or SIGTERM."""
    from dialtone.devloop.command import DevOptions, run_dev

    return run_dev(
        DevOptions(
            public_url=args.public_url,
            force_tunnel=args.tunnel,
            voice=not (args.sms_only or args.no_update),
            sms=not (args.voice_only or args.no_update),
            reload=not args.no_reload,
            inspector=not args.no_inspector,
            sms_path=args.sms_path,
            voice_path=args.voice_path,
        )
    )
