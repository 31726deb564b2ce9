from sensornet.liveness import liveness

S = 10**9


def test_liveness_bands() -> None:
    now = 1000 * S
    assert liveness(None, 60, now) == "never"
    assert liveness(now - 100 * S, 60, now) == "online"
    assert liveness(now - 300 * S, 60, now) == "stale"
    assert liveness(now - 400 * S, 60, now) == "offline"
    assert liveness(now - 1 * S, 60, now, said_offline=True) == "offline"
