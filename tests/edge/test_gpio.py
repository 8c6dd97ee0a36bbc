"""GPIO wrappers on gpiozero's own MockFactory (real gpiozero devices, mock pins)."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator

import pytest
from gpiozero import Device
from gpiozero.exc import BadPinFactory, GPIOPinInUse
from gpiozero.pins.mock import MockFactory, MockPin

from camperhub.edge.config import GpioConfig
from camperhub.edge.gpio import GpioError, GpioInputs, GpioUnavailable, StatusLed


@pytest.fixture
def factory() -> Iterator[MockFactory]:
    f = MockFactory()
    yield f
    f.close()


def pin(factory: MockFactory, n: int) -> MockPin:
    p = factory.pin(n)
    assert isinstance(p, MockPin)
    return p


def wait_until(cond: Callable[[], bool], timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.01)


def new_threads(before: set[threading.Thread]) -> set[threading.Thread]:
    return {t for t in threading.enumerate() if t not in before and t.is_alive()}


# -- status LED -------------------------------------------------------------------


def test_led_shows_flowing_buffering_and_off(factory: MockFactory) -> None:
    led_pin = pin(factory, 17)
    with StatusLed(17, pin_factory=factory, blink_on_s=0.03, blink_off_s=0.03) as led:
        assert led.state == "off" and led_pin.state is False
        led.show("flowing")
        assert led_pin.state is True
        led_pin.clear_states()
        led.show("buffering")
        wait_until(lambda: len(led_pin.states) >= 6)  # on/off/on/... at 30 ms
        values = [s.state for s in led_pin.states]
        assert all(a != b for a, b in zip(values, values[1:]))  # alternating
        led.show("off")
        assert led_pin.state is False
        led_pin.clear_states()
        time.sleep(0.1)
        assert [s.state for s in led_pin.states] == [False]  # the blink stopped
        led.show("flowing")
        assert led_pin.state is True


def test_showing_the_same_state_again_does_not_restart_the_blink(factory: MockFactory) -> None:
    before = set(threading.enumerate())
    led = StatusLed(17, pin_factory=factory, blink_on_s=0.05, blink_off_s=0.05)
    led.show("buffering")
    blink = new_threads(before)
    assert len(blink) == 1  # gpiozero's blink thread
    for _ in range(5):
        led.show("buffering")
    assert new_threads(before) == blink
    led.show("flowing")
    led.show("flowing")
    assert new_threads(before) == set()
    led.close()


def test_close_turns_the_led_off_and_stops_the_blink_thread(factory: MockFactory) -> None:
    before = set(threading.enumerate())
    led_pin = pin(factory, 17)
    led = StatusLed(17, pin_factory=factory, blink_on_s=0.05, blink_off_s=0.05)
    led.show("buffering")
    wait_until(lambda: led_pin.state is True)
    led.close()
    assert led_pin.state is False and led.state == "off"
    assert new_threads(before) == set()
    led.close()  # twice is fine
    led.show("flowing")  # after close: nothing (the agent may race its own shutdown)
    assert led_pin.state is False
    with StatusLed(18, pin_factory=factory) as other, pytest.raises(ValueError):
        other.show("blinking")  # type: ignore[arg-type]


def test_led_from_config(factory: MockFactory) -> None:
    assert StatusLed.from_config(GpioConfig(), pin_factory=factory) is None
    led = StatusLed.from_config(GpioConfig(status_led=5), pin_factory=factory)
    assert led is not None and led.pin == 5
    led.show("flowing")
    assert pin(factory, 5).state is True
    led.close()


# -- inputs -------------------------------------------------------------------


class Recorder:
    def __init__(self) -> None:
        self.events: list[tuple[str, object]] = []

    def button(self) -> None:
        self.events.append(("button", None))

    def shore(self, on: bool) -> None:
        self.events.append(("shore_power", on))

    def service(self, on: bool) -> None:
        self.events.append(("in_service", on))


def test_button_and_switches_call_back_on_change(factory: MockFactory) -> None:
    rec = Recorder()
    cfg = GpioConfig(workshop_button=27, shore_power=22, in_service_switch=23)
    with GpioInputs.from_config(cfg, on_button=rec.button, on_shore_power=rec.shore, on_in_service=rec.service, pin_factory=factory) as inputs:
        button, shore, service = pin(factory, 27), pin(factory, 22), pin(factory, 23)
        # pull-ups: open contacts read high = off
        assert inputs.shore_power is False and inputs.in_service is False and rec.events == []
        shore.drive_low()  # shore power plugged in: contact closes to ground
        assert inputs.shore_power is True
        shore.drive_low()  # no change, no event
        service.drive_low()
        button.drive_low()
        button.drive_high()  # a release is not a press
        shore.drive_high()
        service.drive_high()
        assert rec.events == [("shore_power", True), ("in_service", True), ("button", None), ("shore_power", False), ("in_service", False)]
        assert inputs.shore_power is False and inputs.in_service is False


def test_properties_follow_the_pins_without_callbacks_and_missing_pins_are_none(factory: MockFactory) -> None:
    # (the mock pin takes the pull-up's level when the device is made, so "already on at start" is a change here)
    with GpioInputs(shore_power=22, pin_factory=factory) as inputs:
        assert inputs.shore_power is False and inputs.in_service is None
        pin(factory, 22).drive_low()
        assert inputs.shore_power is True


def test_a_failing_callback_is_logged_and_later_events_still_come(factory: MockFactory, caplog: pytest.LogCaptureFixture) -> None:
    calls: list[bool] = []

    def flaky(on: bool) -> None:
        calls.append(on)
        if on:
            raise RuntimeError("agent loop closed")

    with GpioInputs(shore_power=22, on_shore_power=flaky, pin_factory=factory):
        pin(factory, 22).drive_low()
        pin(factory, 22).drive_high()
    assert calls == [True, False]
    assert "callback failed" in caplog.text and "agent loop closed" in caplog.text


def test_close_stops_the_button_hold_thread(factory: MockFactory) -> None:
    before = set(threading.enumerate())
    inputs = GpioInputs(workshop_button=27, pin_factory=factory)
    assert new_threads(before)  # gpiozero's Button starts a hold thread
    inputs.close()
    assert new_threads(before) == set()
    inputs.close()
    assert inputs.shore_power is None


def test_same_pin_twice_is_a_clear_error_and_leaves_nothing_running(factory: MockFactory) -> None:
    before = set(threading.enumerate())
    with pytest.raises(GpioError, match="shore power switch on GPIO27") as info:
        GpioInputs(workshop_button=27, shore_power=27, pin_factory=factory)
    assert isinstance(info.value.__cause__, GPIOPinInUse)
    assert new_threads(before) == set()  # the button made first was closed again
    with GpioInputs(workshop_button=27, pin_factory=factory):  # and its pin released
        pass


# -- no GPIO ---------------------------------------------------------------------


def _board_model() -> str:
    try:
        with open("/proc/device-tree/model", encoding="ascii", errors="replace") as fh:
            return fh.read()
    except OSError:
        return ""


def test_no_gpio_on_this_machine_is_a_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    # what the agent meets on a laptop or in CI: no pin library, not a Pi
    monkeypatch.setattr(Device, "pin_factory", None)
    monkeypatch.delenv("GPIOZERO_PIN_FACTORY", raising=False)
    if "Raspberry Pi" in _board_model():  # run on a Pi: play a machine whose pin library is missing
        monkeypatch.setenv("GPIOZERO_PIN_FACTORY", "no-such-pin-library")
    with pytest.raises(GpioUnavailable, match=r"no GPIO on this machine .*remove gpio: from the config") as info:
        StatusLed(17)
    assert isinstance(info.value.__cause__, BadPinFactory)
    assert "gpiozero tried" in str(info.value)
    with pytest.raises(GpioUnavailable):
        GpioInputs(workshop_button=27)
    assert Device.pin_factory is None
