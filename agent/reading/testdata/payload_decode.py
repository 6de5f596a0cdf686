#!/usr/bin/python3
"""Decode cellgate batch payloads into JSON lines, written from docs/payloads.md alone.

Usage: payload_decode.py PAYLOADS_MD FILE...

PAYLOADS_MD is docs/payloads.md, where the compact preset dictionary is
printed in hex; each FILE holds one payload (json is not handled here: it
needs no decoder). Output: one line per reading,
{"device_id":...,"reading":<canonical JSON>}, as `cellgate decode` prints.
"""
import datetime
import decimal
import sys
import uuid
import zlib

import cbor2

CROCKFORD = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"


def ulid(b):
    n = int.from_bytes(b, "big")
    return "".join(CROCKFORD[(n >> (5 * i)) & 31] for i in range(25, -1, -1))


def id_parts(b):
    n = int.from_bytes(b, "big")
    return n >> 80, (n >> 32) & (2**48 - 1), n & (2**32 - 1)


def id_from_parts(ms, run, ctr):
    return ((ms << 80) | (run << 32) | ctr).to_bytes(16, "big")


def number(neg, digits, exp):
    """The canonical spelling of ±digits × 10^exp (docs/payloads.md, Numbers)."""
    digits = digits.lstrip("0") or "0"
    if digits == "0":
        neg = False
    sign = "-" if neg else ""
    if exp == 0:
        return sign + digits
    if exp > 0:
        return sign + digits + "e" + str(exp)
    k, n = -exp, len(digits)
    if k < n:
        return sign + digits[: n - k] + "." + digits[n - k:]
    if k - n <= 5:
        return sign + "0." + "0" * (k - n) + digits
    return sign + digits + "e-" + str(k)


def from_int(m, exp=0):
    return number(m < 0, str(abs(m)), exp)


def from_decimal(d):
    sign, digits, exp = d.as_tuple()
    return number(sign == 1, "".join(map(str, digits)), exp)


def jstr(s):
    out = ['"']
    for ch in s:
        c = ord(ch)
        if ch == '"' or ch == "\\":
            out.append("\\" + ch)
        elif ch == "\n":
            out.append("\\n")
        elif ch == "\r":
            out.append("\\r")
        elif ch == "\t":
            out.append("\\t")
        elif ch == "\b":
            out.append("\\b")
        elif ch == "\f":
            out.append("\\f")
        elif c < 0x20:
            out.append("\\u%04x" % c)
        else:
            out.append(ch)
    out.append('"')
    return "".join(out)


def jvalue(v):
    """Canonical JSON of a value that is not a top-level compact number."""
    if v is None:
        return "null"
    if v is True:
        return "true"
    if v is False:
        return "false"
    if isinstance(v, int):
        return from_int(v)
    if isinstance(v, decimal.Decimal):
        return from_decimal(v)
    if isinstance(v, str):
        return jstr(v)
    if isinstance(v, list):
        return "[" + ",".join(jvalue(e) for e in v) + "]"
    if isinstance(v, dict):
        keys = sorted(v, key=lambda k: k.encode())
        return "{" + ",".join(jstr(k) + ":" + jvalue(v[k]) for k in keys) + "}"
    raise ValueError("unexpected value %r" % (v,))


def ts_text(ms):
    t = datetime.datetime(1970, 1, 1) + datetime.timedelta(milliseconds=ms)
    return "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ" % (
        t.year, t.month, t.day, t.hour, t.minute, t.second, t.microsecond // 1000)


def reading_json(rid, sensor, ts, value, unit, tags):
    out = '{"id":%s,"sensor":%s,"ts":"%s","value":%s' % (jstr(rid), jstr(sensor), ts_text(ts), value)
    if unit:
        out += ',"unit":' + jstr(unit)
    if tags:
        keys = sorted(tags, key=lambda k: k.encode())
        out += ',"tags":{' + ",".join(jstr(k) + ":" + jstr(tags[k]) for k in keys) + "}"
    return out + "}"


class Ids:
    """The ULID state: the last ULID's run and counter."""

    def __init__(self):
        self.run = None
        self.ctr = 0

    def decode(self, v, ts, plus):
        if isinstance(v, str):
            return v
        if isinstance(v, uuid.UUID):
            return str(v)
        if isinstance(v, bytes):
            _, self.run, self.ctr = id_parts(v)
            return ulid(v)
        dms, d = (v[0], v[1]) if isinstance(v, list) else (0, v)
        self.ctr = self.ctr + plus + d
        return ulid(id_from_parts(ts + dms, self.run, self.ctr))


def decode_cbor(b):
    version, device, strs, readings = b
    assert version == 1, version
    ids, ts, lines = Ids(), 0, []
    for r in readings:
        ts += r[1]
        rid = ids.decode(r[3], ts, 0)
        unit = strs[r[4]] if len(r) > 4 and r[4] is not None else ""
        tags = {strs[k]: strs[v] for k, v in r[5].items()} if len(r) > 5 else {}
        lines.append(reading_json(rid, strs[r[0]], ts, jvalue(r[2]), unit, tags))
    return device, lines


def decode_compact(b):
    version, device, strs, ts0, sensors, tss, values, idcol, units, tagcol = b
    assert version == 1, version
    last = {}  # sensor index -> [last ts, last interval, seen, exp, mantissa]
    ids, lines = Ids(), []
    for i, s in enumerate(sensors):
        st = last.setdefault(s, [ts0, 0, False, 0, 0])
        ts = st[0] + st[1] + tss[i]
        if st[2]:
            st[1] = ts - st[0]
        st[0], st[2] = ts, True
        v = values[i]
        if isinstance(v, int) and not isinstance(v, bool):
            st[4] += v
            value = from_int(st[4], st[3])
        elif isinstance(v, decimal.Decimal):
            sign, digits, exp = v.as_tuple()
            m = int("".join(map(str, digits)))
            st[3], st[4] = exp, -m if sign else m
            value = from_decimal(v)
        else:
            value = jvalue(v)
        rid = ids.decode(idcol[i], ts, 1)
        unit = strs[units[i]] if units is not None and units[i] is not None else ""
        tags = {}
        if tagcol is not None and tagcol[i] is not None:
            tags = {strs[k]: strs[v] for k, v in tagcol[i].items()}
        lines.append(reading_json(rid, strs[s], ts, value, unit, tags))
    return device, lines


def decode(payload, zdict):
    if payload[0] == 0x84:
        return decode_cbor(cbor2.loads(payload))
    if payload[0] == 0x8A:
        return decode_compact(cbor2.loads(payload))
    if payload[1] & 0x20:  # FDICT: compact with the preset dictionary
        d = zlib.decompressobj(zdict=zdict)
        raw = d.decompress(payload) + d.flush()
        return decode_compact(cbor2.loads(raw))
    return decode_cbor(cbor2.loads(zlib.decompress(payload)))


def dictionary(doc):
    """The hex block after <!-- compact-dict-v1 --> in docs/payloads.md."""
    text = open(doc, encoding="utf-8").read()
    block = text.split("<!-- compact-dict-v1 -->", 1)[1].split("```", 2)[1]
    return bytes.fromhex("".join(block.split()))


def main():
    zdict = dictionary(sys.argv[1])
    for name in sys.argv[2:]:
        device, lines = decode(open(name, "rb").read(), zdict)
        for line in lines:
            sys.stdout.write('{"device_id":%s,"reading":%s}\n' % (jstr(device), line))


if __name__ == "__main__":
    main()
