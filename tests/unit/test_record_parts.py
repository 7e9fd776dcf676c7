"""The record's header reads from raw fields give exactly what mitmproxy's decoded view gives."""

from __future__ import annotations

from hypothesis import given, settings, strategies as st
from mitmproxy.http import Headers
from mitmproxy.test import tutils

from proxy_addons.record_parts import header_value, headers_list

names = st.sampled_from([b"content-type", b"Content-Type", b"CONTENT-TYPE", b"x-a", b"content-encoding"]) | st.binary(min_size=1, max_size=8)
fields = st.lists(st.tuples(names, st.binary(max_size=12)), max_size=6)


@settings(max_examples=200, deadline=None)
@given(fields)
def test_raw_field_reads_equal_mitmproxys_view(pairs):
    msg = tutils.treq()
    msg.headers = Headers(pairs)
    assert headers_list(msg.headers) == [[k, v] for k, v in msg.headers.items(multi=True)]
    for name in ("content-type", "content-encoding", "x-a"):
        assert header_value(msg, name.encode()) == msg.headers.get(name)
