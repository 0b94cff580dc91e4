"""Window and period durations written the way users write them: 30s, 1m, 1h, 1d."""

from .errors import ConfigError

_UNITS_MS = {"s": 1_000, "m": 60_000, "h": 3_600_000, "d": 86_400_000}


def parse_duration(text: str) -> int:
    """'1m' -> 60000. Raises ConfigError naming the accepted forms."""
    text = str(text).strip()
    unit = text[-1:]
    number = text[:-1]
    if unit not in _UNITS_MS or not number.isdigit() or int(number) <= 0:
        raise ConfigError(
            f"duration {text!r} is not understood: write a positive whole number followed by "
            "s, m, h or d (for example 30s, 1m, 1h, 1d)"
        )
    return int(number) * _UNITS_MS[unit]


def duration_label(ms: int) -> str:
    """60000 -> '1m': the largest unit that divides the duration exactly."""
    if ms <= 0:
        raise ConfigError(f"duration of {ms} ms must be positive")
    for unit in ("d", "h", "m", "s"):
        if ms % _UNITS_MS[unit] == 0:
            return f"{ms // _UNITS_MS[unit]}{unit}"
    raise ConfigError(f"duration of {ms} ms is not a whole number of seconds")
