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
