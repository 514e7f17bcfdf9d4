"""plantwatch simulator: realistic multi-asset process data, replay, fault injection and drills.

It may import the monitor's wire contract, MQTT helpers and model artefacts;
the monitor never imports it.
"""
