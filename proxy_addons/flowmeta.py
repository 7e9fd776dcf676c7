"""The ``flow.metadata`` keys our addons share (saved in .mitm, not shown by mitmweb)."""

SERVICE = "hoptrace.service"    # route name that served the flow ("a", "b")
UPSTREAM = "hoptrace.upstream"  # upstream base URL the flow was sent to
ORIGIN = "hoptrace.origin"      # "gateway" when one of our addons made the response
RECORD = "hoptrace.record"      # dict of extra fields for the flows.jsonl record (run, injected …)
RECORDED = "hoptrace.recorded"  # set once the recorder has written the flow
RUN = "hoptrace.run"            # the run id the flow belongs to: placed on arrival, corrected when a run ends
