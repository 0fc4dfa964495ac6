from __future__ import annotations

import pytest

from stream.endpoint_client import CircuitBreaker


class FakeClock:
    def __init__(self) -> None:
        self.t = 100.0

    def __call__(self) -> float:
        return self.t


def test_opens_after_threshold_then_half_opens_and_closes() -> None:
    clock = FakeClock()
    cb = CircuitBreaker(threshold=3, reset_s=2.0, max_reset_s=8.0, clock=clock)
    assert cb.state == "closed" and cb.wait_time() == 0.0
    cb.failure()
    cb.failure()
    assert cb.state == "closed"
    cb.failure()
    assert cb.state == "open" and cb.wait_time() == 2.0
    clock.t += 1.5
    assert cb.wait_time() == 0.5
    clock.t += 0.5
    assert cb.state == "half-open" and cb.wait_time() == 0.0
    cb.success()
    assert cb.state == "closed"


def test_failed_probes_back_off_up_to_the_maximum_and_success_resets() -> None:
    clock = FakeClock()
    cb = CircuitBreaker(threshold=1, reset_s=1.0, max_reset_s=4.0, clock=clock)
    cb.failure()
    waits = []
    for _ in range(4):
        clock.t += cb.wait_time()
        assert cb.state == "half-open"
        cb.failure()
        waits.append(cb.wait_time())
    assert waits == [2.0, 4.0, 4.0, 4.0]
    clock.t += 4.0
    cb.success()
    cb.failure()
    assert cb.wait_time() == 1.0


@pytest.mark.parametrize(
    "kwargs", [{"threshold": 0}, {"reset_s": 0.0}, {"reset_s": 5.0, "max_reset_s": 1.0}]
)
def test_bad_parameters_are_rejected(kwargs: dict[str, float]) -> None:
    with pytest.raises(ValueError, match="threshold"):
        CircuitBreaker(**kwargs)  # type: ignore[arg-type]


def test_half_open_admits_one_probe_at_a_time() -> None:
    clock = FakeClock()
    cb = CircuitBreaker(threshold=2, reset_s=1.0, max_reset_s=4.0, clock=clock)
    assert cb.admit() == 0.0 and cb.admit() == 0.0  # closed: everyone goes
    cb.failure()
    cb.failure()
    assert cb.state == "open" and cb.opened == 1
    assert cb.admit() == 1.0  # open: wait it out
    clock.t += 1.0
    assert cb.admit() == 0.0  # half-open: this caller is the probe ...
    assert cb.admit() == cb.probe_interval == 1.0  # ... and the others wait behind it
    cb.release()  # the probe was cancelled: another caller may probe
    assert cb.admit() == 0.0
    cb.failure()  # the probe failed: open again, for longer
    assert cb.state == "open" and cb.wait_time() == 2.0
    clock.t += 2.0
    assert cb.admit() == 0.0
    cb.success()
    assert cb.state == "closed" and cb.admit() == 0.0 and cb.opened == 1


def test_failures_of_requests_sent_before_it_opened_do_not_extend_the_wait() -> None:
    clock = FakeClock()
    cb = CircuitBreaker(threshold=1, reset_s=1.0, max_reset_s=8.0, clock=clock)
    cb.failure()
    clock.t += 0.5
    cb.failure()  # a straggler: still open, same deadline
    cb.failure()
    assert cb.wait_time() == 0.5 and cb.opened == 1
    clock.t += 0.5
    cb.failure()  # now a failed probe
    assert cb.wait_time() == 2.0 and cb.opened == 1


def test_a_success_while_open_closes_it() -> None:
    clock = FakeClock()
    cb = CircuitBreaker(threshold=1, clock=clock)
    cb.failure()
    cb.success()  # a request sent earlier came back fine: the endpoint is up
    assert cb.state == "closed" and cb.admit() == 0.0
    cb.failure()
    assert cb.opened == 2
