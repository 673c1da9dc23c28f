"""The `scripts/develop` session: where its parts listen; the options of the tools checking it."""

from __future__ import annotations

import argparse
from pathlib import Path

import aiohttp

from .homeassistant import HomeAssistantApi
from .simulation import SimulatorControl

HOME_ASSISTANT_URL = "http://127.0.0.1:8123"
CONTROL_URL = "http://127.0.0.1:18780"
TOKEN_FILE = ".dev/token"  # noqa: S105 - where the token is, not the token
# The local Twilio stand-in (devtools/twilio_server.py): the dev site's SMS entity sends there,
# and it appends every SMS it accepts to SMS_LOG.
TWILIO_URL = "http://127.0.0.1:18790"
SMS_LOG = ".dev/sms.jsonl"


def session_parser(description: str | None) -> argparse.ArgumentParser:
    """A parser with --url, --control and --token-file of the develop session."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--url", default=HOME_ASSISTANT_URL, help="Home Assistant")
    parser.add_argument("--control", default=CONTROL_URL, help="the simulator's control API")
    parser.add_argument("--token-file", default=TOKEN_FILE, help="a long-lived access token")
    return parser


def session_apis(
    session: aiohttp.ClientSession, args: argparse.Namespace
) -> tuple[HomeAssistantApi, SimulatorControl]:
    """Home Assistant's APIs and the simulator's control API, as the parsed options say."""
    token = Path(args.token_file).read_text().strip()
    return HomeAssistantApi(session, args.url, token), SimulatorControl(session, args.control)
