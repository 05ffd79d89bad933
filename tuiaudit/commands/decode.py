"""``tuiaudit decode``: a blob v4 string, or a ``telemetry-events`` envelope, to readable JSON."""

from __future__ import annotations

import argparse
import sys
from typing import Any

import orjson

from tuiaudit.codec import DEFAULT_MAX_SIZE, DecodeError, decode_blob, to_tagged_json
from tuiaudit.codec.blob import decode_envelope

NAME = "decode"
HELP = "decode a blob v4 string or a telemetry-events envelope to readable JSON"

EPILOG = """\
examples:
  tuiaudit decode AAQAAA...                     a blob string (base64url)
  tuiaudit decode '{"type": "telemetry-events", "events": "AAQAAA..."}'
  tuiaudit preview --raw | tuiaudit decode -     read a blob or envelope from stdin
  tuiaudit decode - < sent.jsonl                 JSON lines of envelopes (the file:// sink)

Values that JSON lacks are tagged as in the reference codec: {"$kw": "ns/name"},
{"$uuid": "…"}, {"$inst": epoch_ms}, {"$set": […]}, {"$list": […]}, {"$map": [[k, v]…]}.
Exit status: 0 decoded, 1 the input is not a valid blob or envelope.
"""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.epilog = EPILOG
    parser.add_argument(
        "blob", metavar="BLOB|-", help="blob string or envelope JSON (- reads stdin)"
    )
    parser.add_argument("--compact", action="store_true", help="one line of JSON per value")
    parser.add_argument(
        "--max-size",
        type=int,
        default=DEFAULT_MAX_SIZE,
        metavar="BYTES",
        help=f"refuse blobs that declare more decoded bytes (default {DEFAULT_MAX_SIZE})",
    )


def _envelope_json(envelope: dict[str, Any], max_size: int) -> dict[str, Any]:
    decoded = decode_envelope(envelope, max_size=max_size)
    return {**decoded, "events": to_tagged_json(decoded["events"])}


def decode_text(text: str, *, max_size: int = DEFAULT_MAX_SIZE) -> list[Any]:
    """The JSON-ready values in ``text``: one blob, one envelope, or JSON lines of envelopes."""
    text = text.strip()
    if not text:
        raise DecodeError("no input: give a blob string, an envelope, or - for stdin")
    if not text.startswith("{"):
        return [to_tagged_json(decode_blob(text, max_size=max_size))]
    try:
        docs = [orjson.loads(text)]
    except orjson.JSONDecodeError:
        try:  # the file:// sink writes one envelope per line
            docs = [orjson.loads(line) for line in text.splitlines() if line.strip()]
        except orjson.JSONDecodeError as exc:
            raise DecodeError(f"input looks like JSON but is not: {exc}") from None
    return [_envelope_json(doc, max_size) for doc in docs]


def run(args: argparse.Namespace) -> int:
    text = sys.stdin.read() if args.blob == "-" else args.blob
    try:
        values = decode_text(text, max_size=args.max_size)
    except DecodeError as exc:
        print(f"tuiaudit decode: {exc}", file=sys.stderr)
        return 1
    option = 0 if args.compact else orjson.OPT_INDENT_2
    for value in values:
        sys.stdout.write(orjson.dumps(value, option=option).decode() + "\n")
    return 0
