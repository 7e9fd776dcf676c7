"""The addon script mitmdump/mitmweb load: ``mitmdump -s proxy_addons/gateway.py``.

Order matters: redaction first (it marks each flow so every copy written is redacted), then
routing (it picks the service), then the annotating addons, the recorder last
so the record and the .mitm file carry every annotation. Faults (a no-op without rules) comes right
after LiveRuns: it selects hops by the run placement LiveRuns gives them. mitmproxy sees them as
one addon (pipeline.py: its walk down seven addons on every event was ≈ 14–17 % of our cost a hop).
"""

from proxy_addons.annotate import LiveRuns
from proxy_addons.faults import Faults
from proxy_addons.pipeline import Pipeline
from proxy_addons.recorder import Recorder
from proxy_addons.redact import Redact
from proxy_addons.retention import Retention
from proxy_addons.routing import Routing
from proxy_addons.upstream import FreshUpstream

routing, fresh, recorder = Routing(), FreshUpstream(), Recorder()
addons = [Pipeline(Redact(), routing, fresh, LiveRuns(recorder), Faults(routing, fresh), Retention(), recorder)]
