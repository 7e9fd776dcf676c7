"""The record's header reads from raw fields give exactly what mitmproxy's decoded view gives."""

from __future__ import annotations

from hypothesis import given, settings, strategies as st
from mitmproxy.http import Headers
from mitmproxy.test import tutils

from proxy_addons.record_parts import headers_list, type_and_coding

names = st.sampled_from([b"content-type", b"Content-Type", b"CONTENT-TYPE", b"x-a", b"content-encoding",
                         b"Content-Encoding"]) | st.binary(min_size=1, max_size=8)
values = st.sampled_from([b"", b"gzip", b"application/json"]) | st.binary(max_size=12)
fields = st.lists(st.tuples(names, values), max_size=6)


@settings(max_examples=200, deadline=None)
@given(fields)
def test_raw_field_reads_equal_mitmproxys_view(pairs):
    msg = tutils.treq()
    msg.headers = Headers(pairs)
    assert headers_list(msg.headers) == [[k, v] for k, v in msg.headers.items(multi=True)]
    assert type_and_coding(msg) == (msg.headers.get("content-type"), bool(msg.headers.get("content-encoding")))
