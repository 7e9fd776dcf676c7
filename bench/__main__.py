"""``make bench``: the gateway benchmark, then the report-speed benchmark; one exit status."""

import sys

from bench import gateway, report_speed

if __name__ == "__main__":
    codes = [gateway.main(sys.argv[1:]), report_speed.main([])]
    sys.exit(max(codes))
