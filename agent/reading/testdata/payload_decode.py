#!/usr/bin/python3
"""Decode cellgate batch payloads into JSON lines, written from docs/payloads.md alone.

Usage: payload_decode.py PAYLOADS_MD [--context FILE]... FILE...

PAYLOADS_MD is docs/payloads.md, where the compact preset dictionary is
printed in hex; each --context FILE holds one compact version 2 context as
published; each FILE holds one payload (json is not handled here: it needs
no decoder). Output: one line per reading,
{"device_id":...,"reading":<canonical JSON>}, as `cellgate decode` prints.
"""
import datetime
import decimal
import hashlib
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

    def __init__(self, run=None, ctr=0):
        self.run = run
        self.ctr = ctr

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


class Context:
    """A compact version 2 context: [1, device_id, run, counter0, t0, strings, sensors, ? cycle]."""

    def __init__(self, c):
        version, self.device, run, self.counter0, self.t0, self.strs, sensors = c[:7]
        self.cycle = c[7] if len(c) > 7 else []
        assert version == 1, version
        self.run = int.from_bytes(run, "big")
        self.sensors = []  # [name, unit, tags, interval, exp, phase or None]
        for e in sensors:
            name, unit, tags, interval, exp = e[:5]
            self.sensors.append([
                self.strs[name],
                self.strs[unit] if unit is not None else "",
                {self.strs[k]: self.strs[v] for k, v in tags.items()} if tags is not None else {},
                interval, exp, e[5] if len(e) > 5 else None])
        self.by_name = {s[0]: s for s in self.sensors}

    def first_tick(self, s):
        """The first tick at or after t0 of a sensor with a phase."""
        return self.t0 + (s[5] - self.t0) % s[3]

    def expected_ids(self, base):
        """The ids made from t0 to base by the sensors with a phase, one per tick."""
        n = sum((base - 1 - s[5]) // s[3] - (self.t0 - 1 - s[5]) // s[3]
                for s in self.sensors if s[5] is not None)
        return max(-(1 << 32), min(n, 1 << 32))


def context_id(raw):
    return int.from_bytes(hashlib.sha256(raw).digest()[:4], "big")


def decode_compact2(b, contexts):
    ctx = b[1]
    if isinstance(ctx, list):
        ctx = Context(ctx)
    elif ctx in contexts:
        ctx = contexts[ctx]
    else:
        raise ValueError("context %08x is not known" % ctx)
    values = b[5]
    n = len(values)

    def column(c):
        return c if isinstance(c, list) else [c] * n

    m, cycle = len(ctx.sensors), ctx.cycle
    if not isinstance(b[3], list) and b[3] >= m:  # the cycle from position b[3] - m
        sensors = [cycle[(b[3] - m + i) % len(cycle)] for i in range(n)]
    else:
        sensors = column(b[3])
    tss = column(b[4])

    def sensor_name(s):
        return ctx.sensors[s][0] if s >= 0 else strs[-1 - s]

    strs = ctx.strs + (b[7] if len(b) > 7 else [])
    first = ctx.by_name.get(sensor_name(sensors[0])) if n else None
    if first is not None and first[5] is not None:  # ts0 counts the first sensor's intervals
        ts0 = ctx.first_tick(first) + b[2] * first[3]
    else:
        ts0 = ctx.t0 + b[2]
    idcol = b[6] if isinstance(b[6], list) else [b[6]] + [0] * (n - 1)
    units = column(b[8]) if len(b) > 8 and b[8] is not None else [None] * n
    tagcol = column(b[9]) if len(b) > 9 and b[9] is not None else [None] * n
    state = {}  # name -> [last ts, interval, seen, fixed, exp, mantissa, unit, tags, phase]
    ids, lines = Ids(ctx.run, ctx.counter0 - 1 + ctx.expected_ids(ts0)), []
    for i in range(n):
        name = sensor_name(sensors[i])
        if name not in state:
            _, unit, tags, interval, exp, phase = ctx.by_name.get(name, [name, "", {}, 0, 0, None])
            state[name] = [ts0, interval, False, interval > 0, exp, 0, unit, tags, phase]
        st = state[name]
        if st[2]:
            predicted = st[0] + st[1]
        elif st[8] is not None:  # the next tick at or after the base time
            predicted = st[0] + (st[8] - st[0]) % st[1]
        else:
            predicted = st[0]
        ts = predicted + tss[i]
        if st[2] and not st[3]:
            st[1] = ts - st[0]
        st[0], st[2] = ts, True
        v = values[i]
        if isinstance(v, int) and not isinstance(v, bool):
            st[5] += v
            value = from_int(st[5], st[4])
        elif isinstance(v, decimal.Decimal):
            sign, digits, exp = v.as_tuple()
            m = int("".join(map(str, digits)))
            st[4], st[5] = exp, -m if sign else m
            value = from_decimal(v)
        else:
            value = jvalue(v)
        rid = ids.decode(idcol[i], ts, 1)
        u = units[i]
        unit = st[6] if u is None else "" if u is False else strs[u]
        t = tagcol[i]
        tags = st[7] if t is None else {} if t is False else {strs[k]: strs[v] for k, v in t.items()}
        lines.append(reading_json(rid, name, ts, value, unit, tags))
    return ctx.device, lines


def decode_compact_any(b, contexts):
    return decode_compact2(b, contexts) if b[0] == 2 else decode_compact(b)


def decode(payload, zdict, contexts):
    if payload[0] == 0x84:
        return decode_cbor(cbor2.loads(payload))
    if 0x87 <= payload[0] <= 0x8A:
        return decode_compact_any(cbor2.loads(payload), contexts)
    if payload[1] & 0x20:  # FDICT: compact with the preset dictionary
        d = zlib.decompressobj(zdict=zdict)
        raw = d.decompress(payload) + d.flush()
        return decode_compact_any(cbor2.loads(raw), contexts)
    return decode_cbor(cbor2.loads(zlib.decompress(payload)))


def dictionary(doc):
    """The hex block after <!-- compact-dict-v1 --> in docs/payloads.md."""
    text = open(doc, encoding="utf-8").read()
    block = text.split("<!-- compact-dict-v1 -->", 1)[1].split("```", 2)[1]
    return bytes.fromhex("".join(block.split()))


def main():
    zdict = dictionary(sys.argv[1])
    args, contexts = sys.argv[2:], {}
    while args and args[0] == "--context":
        raw = open(args[1], "rb").read()
        contexts[context_id(raw)] = Context(cbor2.loads(raw))
        args = args[2:]
    for name in args:
        device, lines = decode(open(name, "rb").read(), zdict, contexts)
        for line in lines:
            sys.stdout.write('{"device_id":%s,"reading":%s}\n' % (jstr(device), line))


if __name__ == "__main__":
    main()
