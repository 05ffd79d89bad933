"""``tuiaudit decode``: a blob v4 string, or a ``telemetry-events`` envelope, to readable JSON."""

from __future__ import annotations

import argparse
import re
import sys
from typing import Any

import orjson

from tuiaudit.codec import (
    DEFAULT_MAX_ELEMENTS,
    DEFAULT_MAX_OUTPUT_BYTES,
    DEFAULT_MAX_SIZE,
    DecodeError,
    decode_blob,
    to_tagged_json,
)
from tuiaudit.codec.blob import decode_envelope
from tuiaudit.commands.preview import friendly
from tuiaudit.safe_text import escape_controls, json_safe

# base64url of u16be(4) and the first length byte: every blob v4 starts so.
_V4_PREFIXES = ("AAQ", "AAR", "AAS", "AAT")
_BASE64URL = re.compile(r"[A-Za-z0-9_-]+={0,2}")

NAME = "decode"
HELP = "decode a blob v4 string or a telemetry-events envelope to readable JSON"

EPILOG = """\
examples:
  tuiaudit decode AAQAAA...                     a blob string (base64url)
  tuiaudit decode '{"type": "telemetry-events", "events": "AAQAAA..."}'
  tuiaudit preview --raw | tuiaudit decode -     read a blob or envelope from stdin
  tuiaudit decode - < sent.jsonl                 JSON lines of envelopes (the file:// sink)

Instants print as RFC 3339 text, UUIDs and keywords as strings, sets as lists.
--tagged prints the codec's exact form instead, as in the reference codec:
{"$kw": "ns/name"}, {"$uuid": "…"}, {"$inst": epoch_ms}, {"$set": […]},
{"$list": […]}, {"$map": [[k, v]…]}.
A blob is refused (exit status 1) past --max-size decompressed bytes, or when
its decoded value would hold more than --max-bytes of text or --max-elements
items (a cache reference counts as what it stands for: a small blob may not
stand for gigabytes). Control characters print as JSON escapes.
Exit status: 0 decoded, 1 the input is not a valid blob or envelope.
"""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.epilog = EPILOG
    parser.add_argument(
        "blob", metavar="BLOB|-", help="blob string or envelope JSON (- reads stdin)"
    )
    parser.add_argument("--compact", action="store_true", help="one line of JSON per value")
    parser.add_argument(
        "--tagged",
        action="store_true",
        help='the codec\'s tagged JSON ({"$inst": …}, {"$uuid": …}) instead of plain values',
    )
    parser.add_argument(
        "--max-size",
        type=int,
        default=DEFAULT_MAX_SIZE,
        metavar="BYTES",
        help=f"refuse blobs that declare more decoded bytes (default {DEFAULT_MAX_SIZE})",
    )
    parser.add_argument(
        "--max-bytes",
        type=int,
        default=DEFAULT_MAX_OUTPUT_BYTES,
        metavar="BYTES",
        help="refuse values holding more bytes of text, cache re-uses counted "
        f"(default {DEFAULT_MAX_OUTPUT_BYTES})",
    )
    parser.add_argument(
        "--max-elements",
        type=int,
        default=DEFAULT_MAX_ELEMENTS,
        metavar="N",
        help=f"refuse values of more list items and map entries (default {DEFAULT_MAX_ELEMENTS})",
    )


def decode_text(
    text: str,
    *,
    max_size: int = DEFAULT_MAX_SIZE,
    max_bytes: int = DEFAULT_MAX_OUTPUT_BYTES,
    max_elements: int = DEFAULT_MAX_ELEMENTS,
    tagged: bool = True,
) -> list[Any]:
    """The JSON-ready values in ``text``: one blob, one envelope, or JSON lines of envelopes.

    ``tagged``: the codec's tagged JSON; else plain values (RFC 3339 instants).
    """
    text = text.strip()
    if not text:
        raise DecodeError("no input: give a blob string, an envelope, or - for stdin")
    limits = {"max_size": max_size, "max_bytes": max_bytes, "max_elements": max_elements}
    as_json = to_tagged_json if tagged else friendly
    if not text.startswith("{"):
        if _BASE64URL.fullmatch(text) and not text.startswith(_V4_PREFIXES):
            raise DecodeError(
                "not a blob: a blob v4 string starts with AAQ, AAR, AAS or AAT (the version, 4); "
                "give a blob, a telemetry-events envelope, or - for stdin"
            )
        return [as_json(decode_blob(text, **limits))]
    try:
        docs = [orjson.loads(text)]
    except orjson.JSONDecodeError:
        try:  # the file:// sink writes one envelope per line
            docs = [orjson.loads(line) for line in text.splitlines() if line.strip()]
        except orjson.JSONDecodeError as exc:
            raise DecodeError(f"input looks like JSON but is not: {exc}") from None
    out = []
    for doc in docs:
        decoded = decode_envelope(doc, **limits)
        out.append({**decoded, "events": as_json(decoded["events"])})
    return out


def run(args: argparse.Namespace) -> int:
    text = sys.stdin.read() if args.blob == "-" else args.blob
    try:
        values = decode_text(
            text,
            max_size=args.max_size,
            max_bytes=args.max_bytes,
            max_elements=args.max_elements,
            tagged=args.tagged,
        )
    except DecodeError as exc:
        print(f"tuiaudit decode: {escape_controls(exc)}", file=sys.stderr)
        return 1
    option = 0 if args.compact else orjson.OPT_INDENT_2
    for value in values:
        sys.stdout.write(json_safe(orjson.dumps(value, option=option).decode()) + "\n")
    return 0
