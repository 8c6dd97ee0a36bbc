"""The camper's GPIO: a status LED, the workshop button and two switches, through gpiozero.

Pin numbers are Broadcom (BCM) numbers from the edge config's ``gpio:``
section (:class:`camperhub.edge.config.GpioConfig`); each pin is optional.

* :class:`StatusLed` tells the crew at a glance whether data flows: steady on
  (``flowing``), blinking (``buffering``: readings are queued, the 4G link or
  the broker is down), off (the agent is not running).
* :class:`GpioInputs` turns the workshop button into ``on_button()`` and the
  shore-power and in-service switches (contacts closing to ground, internal
  pull-up: closed = on) into ``on_shore_power(bool)`` / ``on_in_service(bool)``
  on every change, with the current values as properties.

Both take an optional gpiozero ``pin_factory`` (tests pass
``gpiozero.pins.mock.MockFactory()``); without one gpiozero picks the
machine's (lgpio on current Raspberry Pi OS). On a machine without GPIO
construction raises :class:`GpioUnavailable` with a message the agent can log
as is.
"""

from __future__ import annotations

import logging
import threading
import warnings
from collections.abc import Callable
from typing import Any, Literal, TypeVar

from gpiozero import LED, Button, DigitalInputDevice, Factory, GPIOZeroError
from gpiozero.exc import BadPinFactory, PinFactoryFallback

from camperhub.edge.config import GpioConfig

log = logging.getLogger(__name__)

LedState = Literal["flowing", "buffering", "off"]
LED_STATES: tuple[LedState, ...] = ("flowing", "buffering", "off")

_D = TypeVar("_D")


class GpioError(RuntimeError):
    """A GPIO device could not be set up (pin in use, invalid pin, ...)."""


class GpioUnavailable(GpioError):
    """This machine has no GPIO gpiozero can drive."""


def _open(cls: Callable[..., _D], what: str, pin: int, pin_factory: Factory | None, **kwargs: Any) -> _D:
    """Construct a gpiozero device, mapping gpiozero's errors to GpioError/GpioUnavailable."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", PinFactoryFallback)
        try:
            return cls(pin, pin_factory=pin_factory, **kwargs)
        except BadPinFactory as exc:
            tried = "; ".join(str(w.message) for w in caught if issubclass(w.category, PinFactoryFallback))
            raise GpioUnavailable(
                f"no GPIO on this machine for the {what} (GPIO{pin}): remove gpio: from the config, "
                f"or install a pin library (python3-lgpio on Raspberry Pi OS)"
                + (f"; gpiozero tried: {tried}" if tried else "")
            ) from exc
        except GPIOZeroError as exc:
            raise GpioError(f"{what} on GPIO{pin}: {exc}") from exc
        finally:
            for w in caught:
                if not issubclass(w.category, PinFactoryFallback):
                    warnings.warn_explicit(w.message, w.category, w.filename, w.lineno)


class StatusLed:
    """The status LED: steady on while data flows, blinking while buffering, off when the agent is down.

    ``show`` is cheap to call on every status change: showing the state the
    LED already shows does nothing (a blink is not restarted). The blink runs
    in gpiozero's own background thread, stopped by ``show`` of another state
    and by :meth:`close`. Safe to call from any thread.
    """

    def __init__(
        self,
        pin: int,
        *,
        pin_factory: Factory | None = None,
        blink_on_s: float = 0.5,
        blink_off_s: float = 0.5,
        active_high: bool = True,
    ) -> None:
        if blink_on_s <= 0 or blink_off_s <= 0:
            raise ValueError("blink_on_s and blink_off_s must be positive")
        self.pin = pin
        self.blink_on_s, self.blink_off_s = blink_on_s, blink_off_s
        self._lock = threading.Lock()
        self._led: LED | None = _open(LED, "status LED", pin, pin_factory, active_high=active_high, initial_value=False)
        self._state: LedState = "off"

    @classmethod
    def from_config(cls, cfg: GpioConfig, *, pin_factory: Factory | None = None, **kwargs: Any) -> StatusLed | None:
        """The LED of ``gpio: status_led:``, or None when the config has none."""
        return None if cfg.status_led is None else cls(cfg.status_led, pin_factory=pin_factory, **kwargs)

    @property
    def state(self) -> LedState:
        """What the LED shows now."""
        return self._state

    def show(self, state: LedState) -> None:
        """Show ``state`` (``flowing``, ``buffering`` or ``off``); no-op when already shown or closed."""
        if state not in LED_STATES:
            raise ValueError(f"LED state must be one of {LED_STATES}, not {state!r}")
        with self._lock:
            if self._led is None or state == self._state:
                return
            if state == "flowing":
                self._led.on()  # stops a blink first
            elif state == "buffering":
                self._led.blink(on_time=self.blink_on_s, off_time=self.blink_off_s, background=True)
            else:
                self._led.off()
            self._state = state

    def close(self) -> None:
        """Turn the LED off, stop the blink thread and release the pin; safe to call twice."""
        with self._lock:
            led, self._led = self._led, None
            self._state = "off"
        if led is not None:
            led.off()
            led.close()

    def __enter__(self) -> StatusLed:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class GpioInputs:
    """The workshop button and the shore-power and in-service switches.

    Callbacks run in gpiozero's threads (the pin library's event thread on a
    Pi; the caller's thread with the mock factory), never in the agent's
    event loop: an asyncio agent must hop with ``loop.call_soon_threadsafe``.
    A callback that raises is logged and does not stop later events. Switches
    report changes only; read :attr:`shore_power` / :attr:`in_service` for the
    value at start-up.
    """

    def __init__(
        self,
        *,
        workshop_button: int | None = None,
        shore_power: int | None = None,
        in_service_switch: int | None = None,
        on_button: Callable[[], None] | None = None,
        on_shore_power: Callable[[bool], None] | None = None,
        on_in_service: Callable[[bool], None] | None = None,
        pin_factory: Factory | None = None,
        button_bounce_s: float = 0.05,
        switch_bounce_s: float = 0.1,
    ) -> None:
        self.on_button, self.on_shore_power, self.on_in_service = on_button, on_shore_power, on_in_service
        self._button: Button | None = None
        self._shore: DigitalInputDevice | None = None
        self._service: DigitalInputDevice | None = None
        try:
            if workshop_button is not None:
                self._button = _open(Button, "workshop button", workshop_button, pin_factory, pull_up=True, bounce_time=button_bounce_s)
                self._button.when_pressed = self._pressed
            if shore_power is not None:
                self._shore = _open(DigitalInputDevice, "shore power switch", shore_power, pin_factory, pull_up=True, bounce_time=switch_bounce_s)
                self._shore.when_activated = lambda: self._switched("shore power", self.on_shore_power, True)
                self._shore.when_deactivated = lambda: self._switched("shore power", self.on_shore_power, False)
            if in_service_switch is not None:
                self._service = _open(DigitalInputDevice, "in-service switch", in_service_switch, pin_factory, pull_up=True, bounce_time=switch_bounce_s)
                self._service.when_activated = lambda: self._switched("in service", self.on_in_service, True)
                self._service.when_deactivated = lambda: self._switched("in service", self.on_in_service, False)
        except BaseException:
            self.close()  # the button's hold thread must not outlive a failed set-up
            raise

    @classmethod
    def from_config(
        cls,
        cfg: GpioConfig,
        *,
        on_button: Callable[[], None] | None = None,
        on_shore_power: Callable[[bool], None] | None = None,
        on_in_service: Callable[[bool], None] | None = None,
        pin_factory: Factory | None = None,
        **kwargs: Any,
    ) -> GpioInputs:
        """The inputs named in ``gpio:`` (the LED is :class:`StatusLed`'s)."""
        return cls(
            workshop_button=cfg.workshop_button, shore_power=cfg.shore_power, in_service_switch=cfg.in_service_switch,
            on_button=on_button, on_shore_power=on_shore_power, on_in_service=on_in_service,
            pin_factory=pin_factory, **kwargs,
        )

    @property
    def shore_power(self) -> bool | None:
        """True while shore power is connected; None when no pin is configured."""
        return None if self._shore is None else bool(self._shore.is_active)

    @property
    def in_service(self) -> bool | None:
        """True while the in-service switch is on; None when no pin is configured."""
        return None if self._service is None else bool(self._service.is_active)

    def close(self) -> None:
        """Release every pin and stop gpiozero's threads for them; safe to call twice."""
        devices = (self._button, self._shore, self._service)
        self._button = self._shore = self._service = None
        for dev in devices:
            if dev is not None:
                dev.close()

    def __enter__(self) -> GpioInputs:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _pressed(self) -> None:
        log.info("workshop button pressed")
        if self.on_button is not None:
            try:
                self.on_button()
            except Exception:
                log.exception("on_button callback failed")

    @staticmethod
    def _switched(what: str, callback: Callable[[bool], None] | None, value: bool) -> None:
        log.info("%s switch: %s", what, "on" if value else "off")
        if callback is not None:
            try:
                callback(value)
            except Exception:
                log.exception("%s callback failed", what)
