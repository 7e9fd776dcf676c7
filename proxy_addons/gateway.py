"""The addon script mitmdump/mitmweb load: ``mitmdump -s proxy_addons/gateway.py``.

Order matters: routing first (it picks the service), then the annotating addons, the recorder last
so the record and the .mitm file carry every annotation.
"""

from proxy_addons.annotate import LiveRuns
from proxy_addons.recorder import Recorder
from proxy_addons.retention import Retention
from proxy_addons.routing import Routing
from proxy_addons.upstream import FreshUpstream

recorder = Recorder()
addons = [Routing(), FreshUpstream(), LiveRuns(recorder), Retention(), recorder]
