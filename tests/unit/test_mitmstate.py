"""Our flows.mitm encoder writes exactly mitmproxy's bytes, also when connections change."""

from __future__ import annotations

import io

from hypothesis import given, settings, strategies as st
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


@settings(max_examples=300, deadline=None)
@given(values)
def test_tnet_is_byte_identical_to_mitmproxy(v):
    assert tnet.dumps(v) == tnetstring.dumps(v)


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
