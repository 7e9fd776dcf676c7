"""hoptrace: mitmproxy addons that record every hop of a service pipeline and rebuild its runs."""
