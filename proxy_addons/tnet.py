"""A faster tnetstring encoder for flows.mitm, byte-identical to ``mitmproxy.io.tnetstring.dumps``.

``dumps`` is the C encoder (``_tnetc.c``, ≈ 7× faster: see docs/performance.md) when ``pip
install`` could compile it, else ``py_dumps`` below; ``ACCELERATED`` says which. Both send what
they do not handle plainly to mitmproxy's own encoder.

mitmproxy's encoder pushes every fragment onto a deque, one call per value (~200 calls and
~700 deque pushes per flow); encoding a flow was the largest single cost of recording. This one
builds each container with one ``b"".join`` and exact-type dispatch, and remembers the encoding of
short strings, byte strings and header pairs (dict keys, header names and values, methods, hosts:
the same few values in every flow). Anything unusual (a subclass of int or str, an unknown type)
goes to mitmproxy's own encoder, so the output never differs.
"""

from __future__ import annotations

from mitmproxy.io import tnetstring


class Encoded(bytes):
    """Bytes already in tnetstring form, spliced in as they are (e.g. a cached connection)."""


MEMO_MAX = 8192  # remembered encodings; the memo starts afresh when full
SHORT = 64  # only str/bytes up to this length are remembered (ids and bodies are not worth it)
# str, bytes or a header pair (bytes, bytes) → its encoding. Keys of these types never compare
# equal to one another, so a hit is the value's own encoding (not so for ints/bools: 0 == False).
_memo: dict = {}


def _remember(value, data: bytes) -> bytes:
    if len(_memo) >= MEMO_MAX:
        _memo.clear()
    _memo[value] = data
    return data


def py_dumps(value) -> bytes:
    t = type(value)
    if t is str:
        hit = _memo.get(value)
        if hit is not None:
            return hit
        data = value.encode("utf8")
        out = b"%d:%s;" % (len(data), data)
        return _remember(value, out) if len(value) <= SHORT else out
    if t is bytes:
        if len(value) > SHORT:
            return b"%d:%s," % (len(value), value)
        hit = _memo.get(value)
        return hit if hit is not None else _remember(value, b"%d:%s," % (len(value), value))
    if value is None:
        return b"0:~"
    if t is tuple and len(value) == 2 and type(value[0]) is bytes and type(value[1]) is bytes:
        hit = _memo.get(value)  # a header: one look-up for the pair
        if hit is not None:
            return hit
        k, v = value
        data = b"%d:%s,%d:%s," % (len(k), k, len(v), v)
        out = b"%d:%s]" % (len(data), data)
        return _remember(value, out) if len(k) + len(v) <= 2 * SHORT else out
    return _rest(value, t)


def _rest(value, t) -> bytes:
    if t is dict:
        # mitmproxy's encoder writes a dict's items last first: so do we
        parts = []
        memo = _memo
        for k, v in reversed(value.items()):
            parts.append(memo.get(k) or py_dumps(k))
            tv = type(v)  # the common values inline: no call for a remembered one or None
            if tv is str or tv is bytes:
                parts.append(memo.get(v) or py_dumps(v))
            elif v is None:
                parts.append(b"0:~")
            elif tv is float:
                f = repr(v).encode()
                parts.append(b"%d:%s^" % (len(f), f))
            else:
                parts.append(py_dumps(v))
        data = b"".join(parts)
        return b"%d:%s}" % (len(data), data)
    if t is list or t is tuple:
        data = b"".join([py_dumps(v) for v in value])
        return b"%d:%s]" % (len(data), data)
    if t is Encoded:
        return value
    if value is True:
        return b"4:true!"
    if value is False:
        return b"5:false!"
    if t is int:
        data = b"%d" % value
        return b"%d:%s#" % (len(data), data)
    if t is float:
        data = repr(value).encode()
        return b"%d:%s^" % (len(data), data)
    return tnetstring.dumps(value)


try:
    from proxy_addons import _tnetc
except ImportError:  # not compiled (no C compiler where it was installed)
    _tnetc = None
if _tnetc is not None:
    _tnetc.setup(tnetstring.dumps, Encoded)
    dumps = _tnetc.dumps
else:
    dumps = py_dumps
ACCELERATED = _tnetc is not None
