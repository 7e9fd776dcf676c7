"""Our flows.mitm encoder writes exactly mitmproxy's bytes, also when connections change."""

from __future__ import annotations

import enum
import io
import os
import shutil
import sys

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from mitmproxy import connection
from mitmproxy.io import FlowReader, tnetstring
from mitmproxy.test import tflow

from proxy_addons import tnet
from proxy_addons.mitmstate import MitmEncoder

values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text() | st.binary(),
    lambda kids: st.lists(kids, max_size=4) | st.tuples(kids, kids)
    | st.dictionaries(st.text(max_size=5) | st.binary(max_size=5), kids, max_size=4),
    max_leaves=25)


ENCODERS = [tnet.py_dumps] + ([tnet._tnetc.dumps] if tnet.ACCELERATED else [])


@settings(max_examples=300, deadline=None)
@given(values)
def test_tnet_is_byte_identical_to_mitmproxy(v):
    for dumps in ENCODERS:
        assert dumps(v) == tnetstring.dumps(v)


class Text(str):
    pass


class Level(enum.IntEnum):
    HIGH = 7


@pytest.mark.parametrize("dumps", ENCODERS, ids=lambda f: f.__module__)
def test_unusual_values_are_byte_identical_or_refused_alike(dumps):
    """Subclasses go to mitmproxy's encoder; big ints, floats' repr, non-ASCII and a dict of more
    items than the C encoder keeps on its stack come out the same; what mitmproxy refuses
    (a lone surrogate, an unknown type) is refused."""
    odd = {"sub": Text("x"), "enum": Level.HIGH, "big": 10**40, "neg": -3, "f": [0.1, 1e300, -0.0, float("inf")],
           "uni": "ünï €", b"k": (True, False, None), "wide": {str(i): i for i in range(100)},
           "encoded": tnet.Encoded(b"0:~"), "nested": [[[{"a": (b"x", b"y")}]]]}
    want = tnetstring.dumps({**odd, "encoded": None})
    assert dumps(odd) == want
    for bad in ("\udc80", object(), {"k": {1, 2}}):
        with pytest.raises((ValueError, UnicodeEncodeError)):
            tnetstring.dumps(bad)
        with pytest.raises((ValueError, UnicodeEncodeError)):
            dumps(bad)


@pytest.mark.skipif(not tnet.ACCELERATED, reason="the C encoder was not built")
def test_c_encoder_refuses_endless_nesting_without_crashing():
    deep: list = []
    for _ in range(sys.getrecursionlimit() * 2):
        deep = [deep]
    with pytest.raises(RecursionError):
        tnet._tnetc.dumps(deep)


def test_c_encoder_is_built_where_a_compiler_is():
    """``pip install`` compiles it when it can; a silent fall-back would make every flow cost
    more to record (docs/performance.md). HOPTRACE_PURE_TNET=1 accepts the fall-back anyway."""
    if os.environ.get("HOPTRACE_PURE_TNET") == "1":
        pytest.skip("HOPTRACE_PURE_TNET=1: the pure-Python encoder is accepted")
    if not (shutil.which("cc") or shutil.which("gcc")):
        pytest.skip("no C compiler here: the pure-Python encoder is used")
    assert tnet.ACCELERATED, "proxy_addons._tnetc was not built although a C compiler is here: see pip's output"


def flows():
    plain = tflow.tflow(resp=True)
    failed = tflow.tflow(err=True)
    annotated = tflow.tflow(resp=True)
    annotated.marked, annotated.comment = ":red_circle:", "run 1a2b · hop 2 · A→B"
    annotated.metadata.update({"hoptrace.record": {"run": {"id": "1a2b", "hop": 2}}, "x": [1, 2.5]})
    edited = tflow.tflow(resp=True)
    edited.backup()
    edited.request.content = b'{"edited": true}'
    ws = tflow.twebsocketflow()
    return [plain, failed, annotated, edited, ws, tflow.tflow()]


def test_flows_are_byte_identical_and_read_back():
    enc = MitmEncoder()
    for f in flows():
        for _ in range(2):  # the second time from the connection cache
            assert enc(f) == tnetstring.dumps(f.get_state())
        (back,) = FlowReader(io.BytesIO(enc(f))).stream()
        assert back.id == f.id and back.request.content == f.request.content


def test_a_changed_connection_is_encoded_again():
    enc, f = MitmEncoder(), tflow.tflow(resp=True)
    enc(f)
    f.server_conn.timestamp_end = f.server_conn.timestamp_start + 1
    f.server_conn.state = connection.ConnectionState.CLOSED
    f.client_conn.alpn_offers = [b"h2"]
    assert enc(f) == tnetstring.dumps(f.get_state())
    f.client_conn.cipher_list.append("TLS_AES_128_GCM_SHA256")  # changed in place
    assert enc(f) == tnetstring.dumps(f.get_state())
