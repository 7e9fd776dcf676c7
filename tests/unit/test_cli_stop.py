"""`hoptrace up` stopping (cli.stop_stack): the gateway is given time to write flows.har, and a
second Ctrl-C skips it without leaving a process or a half-written archive behind."""

from __future__ import annotations

from proxy_addons import cli


class FakeStack:
    def __init__(self, interrupt: bool) -> None:
        self.interrupt, self.calls = interrupt, []

    def stop(self, gateway_timeout: float) -> None:
        self.calls.append(("stop", gateway_timeout))
        if self.interrupt:
            raise KeyboardInterrupt

    def kill(self) -> None:
        self.calls.append(("kill",))


def test_the_gateway_gets_time_for_the_archive_and_a_large_session_is_announced(tmp_path, capsys):
    (tmp_path / "flows.mitm").write_bytes(b"x" * (11 << 20))
    st = FakeStack(interrupt=False)
    cli.stop_stack(st, tmp_path)
    assert st.calls == [("stop", cli.HAR_WAIT)] and cli.HAR_WAIT >= 300
    assert "writes flows.har from flows.mitm (12 MB)" in capsys.readouterr().err


def test_a_small_session_stops_without_a_word(tmp_path, capsys):
    (tmp_path / "flows.mitm").write_bytes(b"x" * 1000)
    cli.stop_stack(FakeStack(interrupt=False), tmp_path)
    assert capsys.readouterr().err == ""


def test_a_second_ctrl_c_kills_everything_and_leaves_no_part(tmp_path, capsys):
    (tmp_path / "flows.har.part").write_bytes(b'{"log": {"entries": [')
    st = FakeStack(interrupt=True)
    cli.stop_stack(st, tmp_path)
    assert st.calls == [("stop", cli.HAR_WAIT), ("kill",)]
    assert not (tmp_path / "flows.har.part").exists()
    assert "flows.har skipped" in capsys.readouterr().err
