# -*- coding: utf-8 -*-
# Copyright: Contributors to cloudefigo.core
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""CloudTrail records to COPY rows (text format), no database needed.

Private to the collection: not a public API, may change without notice.

Facts this code is built on (see docs/cloudtrail.md):
- ``sourceIPAddress`` is often a service name (``ec2.amazonaws.com``, ``AWS Internal``): the text
  goes to ``source_ip`` as is; ``source_inet`` only gets values Python accepts as an address,
  because one ``'999.1.1.1'::inet`` fails the whole COPY.
- ``\\u0000`` anywhere in a record is rejected by jsonb (and NUL by text): stripped.
- Nothing is truncated; every column is ``text``.
- A record without ``eventID`` gets a stable id: ``sha256:`` + the hash of its canonical JSON.
- gzip is decompressed member by member with a size cap: a decompression bomb is a bad file.
- One bad record (a number JSON cannot hold such as ``1e999``, a lone UTF-16 surrogate, bytes
  that are not UTF-8, not an object) is rejected on its own and counted; the rest of its file loads.
"""

from __future__ import annotations

import datetime
import gc
import hashlib
import json
import math
import re
import socket
import zlib

try:
    import orjson
except ImportError:  # optional: the standard library's json is ~2x slower at re-serialising
    orjson = None

# The columns of the staging table, in COPY order (the events table has these plus file_id).
COLUMNS = (
    "event_id", "event_time", "event_version", "event_source", "event_name", "aws_region",
    "source_ip", "source_inet", "user_agent", "user_type", "principal_id", "user_arn", "user_name",
    "access_key_id", "account_id", "recipient_account_id", "invoked_by", "error_code", "error_message",
    "read_only", "event_type", "event_category", "request_id", "resources", "record",
)

_COPY_SPECIAL = re.compile("[\\\\\t\n\r\x00]")
# A real date and time as CloudTrail writes it; only days 29-31 need the calendar (see _valid_time).
_EVENT_TIME = re.compile(r"(?!0000)\d{4}-(?:0[1-9]|1[0-2])-(?:0[1-9]|[12]\d|3[01])T(?:[01]\d|2[0-3]):[0-5]\d:(?:[0-5]\d(?:\.\d{1,6})?|60)"
                         r"(?:Z|[+-](?:0\d|1[0-5]):?[0-5]\d)\Z")
_NUL_ESCAPE = b"\\u0000"
_GZIP_MAGIC = b"\x1f\x8b"
# Largest decompressed log file accepted by default (cloudtrail_ingest max_file_size, in MiB).
DEFAULT_MAX_FILE_SIZE = 256 << 20


class BadLogFile(Exception):
    """A log file that cannot be loaded (truncated gzip, too large, invalid JSON, no Records)."""


class RejectedValue(object):
    """Stands for a JSON value Python parsed but PostgreSQL's jsonb cannot hold (``1e999``, ``NaN``):
    serialising a record that holds one fails, so the record is rejected, not silently changed."""

    __slots__ = ("text",)

    def __init__(self, text):
        self.text = text

    def __repr__(self):
        return "RejectedValue(%r)" % self.text


def _finite_float(text):
    value = float(text)
    return value if math.isfinite(value) else RejectedValue(text)


def _bounded_int(text):
    try:
        return int(text)
    except ValueError:  # more digits than Python converts (sys.get_int_max_str_digits)
        return RejectedValue(text[:40] + "...")


def _lenient_loads(data):
    """json with every value that cannot be stored marked (RejectedValue, lone surrogates), so one
    bad record does not take its whole file down; bytes that are not UTF-8 become lone surrogates."""
    if isinstance(data, bytes):
        data = data.decode("utf-8", "surrogateescape")
    return json.loads(data, parse_float=_finite_float, parse_int=_bounded_int, parse_constant=RejectedValue)


def loads(data):
    if orjson is not None:
        try:
            return orjson.loads(data)
        except ValueError:
            pass  # strict: 1e999, lone surrogates, bad UTF-8 -> parse leniently, reject per record
    return _lenient_loads(data)


def dumps(value):
    """Compact JSON bytes; NUL characters written as \\u0000 (stripped by the caller)."""
    if orjson is not None:
        return orjson.dumps(value)
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False, allow_nan=False,
                      default=_unserialisable).encode("utf-8")


def _unserialisable(value):
    raise TypeError("%r cannot be stored" % (value,))


def _canonical(value):
    if orjson is not None:
        return orjson.dumps(value, option=orjson.OPT_SORT_KEYS)
    return json.dumps(value, separators=(",", ":"), sort_keys=True, ensure_ascii=False, allow_nan=False,
                      default=_unserialisable).encode("utf-8")


def gunzip(data, limit=DEFAULT_MAX_FILE_SIZE):
    """Every gzip member of ``data``, decompressed, at most ``limit`` bytes in all.

    Decompression stops as soon as the output passes the limit (never allocates more), so a
    decompression bomb costs ``limit`` bytes and is a BadLogFile, like a truncated member.
    """
    out = []
    total = 0
    rest = data
    try:
        while rest:
            member = zlib.decompressobj(16 + zlib.MAX_WBITS)
            pending = rest
            while True:
                chunk = member.decompress(pending, limit - total + 1)
                total += len(chunk)
                if total > limit:
                    raise BadLogFile("decompresses to more than %d MiB (max_file_size): refused, a decompression bomb "
                                     "or not a CloudTrail log file" % (limit >> 20))
                out.append(chunk)
                if member.eof:
                    break
                pending = member.unconsumed_tail
                if not pending:
                    raise BadLogFile("truncated or corrupt gzip: the compressed data ends before the end of the stream")
            rest = member.unused_data
            if not rest.strip(b"\x00"):
                break  # padding after the last member, as gzip tolerates
    except zlib.error as exc:
        raise BadLogFile("truncated or corrupt gzip: %s" % exc) from None
    return b"".join(out)


def parse_log(data, max_size=DEFAULT_MAX_FILE_SIZE):
    """The list of records of one log file (gzip or plain JSON bytes); BadLogFile if unusable.

    Records are returned as parsed: one that cannot be stored is rejected later, on its own,
    by ``iter_chunks``.
    """
    if data[:2] == _GZIP_MAGIC:
        data = gunzip(data, max_size)
    elif len(data) > max_size:
        raise BadLogFile("larger than %d MiB (max_file_size): refused" % (max_size >> 20))
    # Parsing allocates many small objects that all live until the file is done: the cyclic
    # garbage collector only costs time here (25-30% measured).
    enabled = gc.isenabled()
    gc.disable()
    try:
        document = loads(data)
    except (ValueError, UnicodeDecodeError, RecursionError) as exc:
        raise BadLogFile("invalid JSON: %s" % exc) from None
    finally:
        if enabled:
            gc.enable()
    if not isinstance(document, dict) or not isinstance(document.get("Records"), list):
        raise BadLogFile("no Records: not a CloudTrail log file")
    return document["Records"]


def _has_surrogate(text):
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return True
    return False


def why_rejected(record, exc=None):
    """A short reason for a record that could not be made a row (looked for only on failure)."""
    if not isinstance(record, dict):
        return "not an object"
    stack = [("", record)]
    while stack:
        path, value = stack.pop()
        if isinstance(value, RejectedValue):
            return "number or constant JSON cannot store (%s) at %s" % (value.text, path or "top level")
        if isinstance(value, float) and not math.isfinite(value):
            return "number JSON cannot store (%r) at %s" % (value, path or "top level")
        if isinstance(value, str) and _has_surrogate(value):
            return "lone surrogate or bytes that are not UTF-8 in a string at %s" % (path or "top level")
        if isinstance(value, dict):
            for key, item in value.items():
                if isinstance(key, str) and _has_surrogate(key):
                    return "lone surrogate or bytes that are not UTF-8 in a key at %s" % (path or "top level")
                stack.append(("%s.%s" % (path, key) if path else str(key), item))
        elif isinstance(value, list):
            stack.extend(("%s[%d]" % (path, index), item) for index, item in enumerate(value))
    return "cannot be written as a row: %s" % (exc if exc is not None else "unknown")


def strip_nul(value):
    """The value with NUL characters removed from every string (keys included)."""
    if isinstance(value, str):
        return value.replace("\x00", "")
    if isinstance(value, dict):
        return {strip_nul(key): strip_nul(item) for key, item in value.items()}
    if isinstance(value, list):
        return [strip_nul(item) for item in value]
    return value


def json_column(value):
    """jsonb text for COPY: compact JSON without \\u0000, backslashes doubled."""
    out = dumps(value)
    if _NUL_ESCAPE in out:
        out = dumps(strip_nul(value))
    return out.replace(b"\\", b"\\\\")


def text_column(value):
    """One value in COPY text format: None is \\N, specials escaped, NUL dropped."""
    if value is None:
        return "\\N"
    if not isinstance(value, str):
        if isinstance(value, (dict, list)):
            value = dumps(value).decode("utf-8")
        else:
            value = str(value)
    if _COPY_SPECIAL.search(value):
        value = (value.replace("\x00", "").replace("\\", "\\\\").replace("\t", "\\t")
                 .replace("\n", "\\n").replace("\r", "\\r"))
    return value


def inet_or_none(address, cache=None):
    """The address when it parses as IPv4/IPv6 (PostgreSQL inet), else None."""
    if not isinstance(address, str) or not address:
        return None
    if cache is not None and address in cache:
        return cache[address]
    found = None
    # Service names ("ec2.amazonaws.com", "AWS Internal") never start with a digit and hold no ':'.
    # inet_pton (C) is strict: four decimal octets, or an IPv6 address without a zone.
    if address[0].isdigit() or ":" in address:
        family = socket.AF_INET6 if ":" in address else socket.AF_INET
        try:
            socket.inet_pton(family, address)
            found = address
        except (OSError, ValueError):
            found = None
    if cache is not None:
        if len(cache) > 10000:
            cache.clear()
        cache[address] = found
    return found


def event_id(record):
    """eventID, or a stable content hash for records without one."""
    found = record.get("eventID")
    if isinstance(found, str) and found:
        return found.replace("\x00", "")
    return "sha256:" + hashlib.sha256(_canonical(strip_nul(record))).hexdigest()


def _valid_time(text):
    """ISO 8601 as CloudTrail writes it, and a real date and time (one '2023-13-45' fails a COPY)."""
    if _EVENT_TIME.match(text) is None:
        return False
    if text[8] == "3" or text[8:10] == "29":
        try:
            datetime.date(int(text[:4]), int(text[5:7]), int(text[8:10]))
        except ValueError:
            return False
    return True


def _read_only(value):
    if isinstance(value, bool):
        return "t" if value else "f"
    if isinstance(value, str) and value.lower() in ("true", "false"):
        return "t" if value.lower() == "true" else "f"
    return None


def row_values(record, inet_cache=None):
    """The typed column values of one record (COLUMNS order, record and resources excluded)."""
    identity = record.get("userIdentity")
    if not isinstance(identity, dict):
        identity = {}
    user_name = identity.get("userName")
    if user_name is None:
        context = identity.get("sessionContext")
        issuer = context.get("sessionIssuer") if isinstance(context, dict) else None
        if isinstance(issuer, dict):
            user_name = issuer.get("userName")
    event_time = record.get("eventTime")
    if not isinstance(event_time, str) or not _valid_time(event_time):
        event_time = None  # the raw value stays in `record`
    source_ip = record.get("sourceIPAddress")
    return [
        event_id(record), event_time, record.get("eventVersion"), record.get("eventSource"),
        record.get("eventName"), record.get("awsRegion"), source_ip, inet_or_none(source_ip, inet_cache),
        record.get("userAgent"), identity.get("type"), identity.get("principalId"), identity.get("arn"),
        user_name, identity.get("accessKeyId"), identity.get("accountId"), record.get("recipientAccountId"),
        identity.get("invokedBy"), record.get("errorCode"), record.get("errorMessage"),
        _read_only(record.get("readOnly")), record.get("eventType"), record.get("eventCategory"),
        record.get("requestID"),
    ]


def copy_line(record, inet_cache=None):
    """One COPY text line (bytes, newline included) for one record."""
    values = row_values(record, inet_cache)
    # Fast path: every value a str or None and none holding a COPY special character, so the
    # whole head is one join. Otherwise each value is converted and escaped on its own.
    present = [value for value in values if value is not None]
    try:
        probe = "".join(present)
    except TypeError:
        probe = None
    if probe is not None and not _COPY_SPECIAL.search(probe):
        head = "\t".join(["\\N" if value is None else value for value in values])
    else:
        head = "\t".join([text_column(value) for value in values])
    resources = record.get("resources")
    resources = b"\\N" if resources is None else json_column(resources)
    return b"".join((head.encode("utf-8"), b"\t", resources, b"\t", json_column(record), b"\n"))


def iter_chunks(records, inet_cache=None, rows_per_chunk=250, rejected=None):
    """(COPY payload bytes, event ids) per slice of records; each record let go once done.

    A record that cannot be made a row is left out and, when ``rejected`` is a list, appended to
    it as ``(index, reason)``. The list is emptied as it goes, so a parsed file's memory is
    reused for the next one.
    """
    enabled = gc.isenabled()
    gc.disable()
    try:
        for start in range(0, len(records), rows_per_chunk):
            lines = []
            ids = []
            for index in range(start, min(start + rows_per_chunk, len(records))):
                item = records[index]
                records[index] = None
                try:
                    if not isinstance(item, dict):
                        raise TypeError("not an object")
                    line = copy_line(item, inet_cache)
                except (TypeError, ValueError, UnicodeError, RecursionError) as exc:
                    if rejected is not None:
                        rejected.append((index, why_rejected(item, exc)))
                    continue
                lines.append(line)
                ids.append(line[:line.index(b"\t")].decode("utf-8"))
            if lines:
                yield b"".join(lines), ids
    finally:
        if enabled:
            gc.enable()


def copy_chunks(records, inet_cache=None, rows_per_chunk=500, rejected=None):
    """All COPY payload chunks (bytes) for records, and the list of their event ids."""
    chunks = []
    ids = []
    for chunk, chunk_ids in iter_chunks(list(records), inet_cache, rows_per_chunk, rejected):
        chunks.append(chunk)
        ids.extend(chunk_ids)
    return chunks, ids
