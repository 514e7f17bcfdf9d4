"""The demo's live view: where things are, what is being injected, and why an alarm shows below threshold."""

from __future__ import annotations

import threading
import time
from typing import Any

from monitor.daemon import AssetSnapshot, Snapshot
from monitor.mqtt import settings_from_url
from simulator.faults import FaultTarget, bind_faults, parse_fault
from simulator.process import AssetProcess
from simulator.publish import Publisher
from simulator.view import OFF_DELAY, FooterInfo, render


def _asset(name: str, score: float, alarm: bool) -> AssetSnapshot:
    return AssetSnapshot(name, "m", "v", 100, score, 1.0, alarm, 1, False, 0, 0.0, (("T1", 2.0),))


def test_the_footer_keeps_the_broker_and_metrics_addresses_and_says_what_is_injected_now() -> None:
    snap = Snapshot((_asset("asset01", 0.4, False),), {}, True, True, 0)
    text = render(
        snap, FooterInfo("mqtt://127.0.0.1:1883", "http://127.0.0.1:9108/metrics", ("bias on asset02 (FI103)",))
    )
    footer = text.splitlines()[-4:]
    assert any("mqtt://127.0.0.1:1883" in ln and "http://127.0.0.1:9108/metrics" in ln for ln in footer)
    assert "injecting now: bias on asset02 (FI103)" in text
    assert "injecting now: nothing" in render(snap, FooterInfo("b", "m"))


def test_an_alarm_whose_score_is_back_under_the_threshold_is_marked_off_delay_and_explained() -> None:
    snap = Snapshot((_asset("asset01", 0.6, True), _asset("asset02", 3.0, True)), {}, True, True, 0)
    text = render(snap, FooterInfo("b", "m"))
    rows = {ln.split()[0]: ln for ln in text.splitlines() if ln.startswith("asset0")}
    assert OFF_DELAY in rows["asset01"] and OFF_DELAY not in rows["asset02"] and "ALARM" in rows["asset02"]
    assert any(ln.startswith(f"{OFF_DELAY}: the score is back under the threshold") for ln in text.splitlines())


def test_the_publisher_says_which_fault_it_injects_while_it_does(mosquitto: Any) -> None:
    asset = AssetProcess(7, 1)
    spec = parse_fault(f"bias@20+30:asset=asset01,sensors={asset.sensors[0]},magnitude=5")
    inj = bind_faults([spec], [FaultTarget.of(asset)], 0)
    stop = threading.Event()
    pub = Publisher(settings_from_url(mosquitto.url), [asset], rate=50.0, injections=inj, stop_event=stop)
    seen: list[list[str]] = []
    t = threading.Thread(target=pub.run)
    t.start()
    try:
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline and pub.summary.messages["asset01"] < 80:
            seen.append(pub.injecting())
            time.sleep(0.02)
    finally:
        stop.set()
        t.join(10)
    assert [] in seen and [f"bias on asset01 ({asset.sensors[0]})"] in seen
    assert seen[-1] == []  # over after sample 49
