"""Time as kubellm reads and writes it: UTC, RFC 3339 with a `Z`, parsed leniently.

One set of helpers for the status (seconds, as Kubernetes writes conditions), the rollout
memory (microseconds, so order within a second is kept) and everything that reads them.
"""

from __future__ import annotations

from datetime import UTC, datetime


def utcnow() -> datetime:
    return datetime.now(UTC)


def rfc3339(moment: datetime) -> str:
    """Seconds precision, as Kubernetes writes lastTransitionTime."""
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def timestamp(moment: datetime) -> str:
    """Microsecond precision, for the rollout's own memory."""
    return moment.astimezone(UTC).isoformat().replace("+00:00", "Z")


def parse_time(text: str | None) -> datetime | None:
    """RFC 3339 (`Z` or an offset) to an aware datetime; None for nothing or garbage."""
    if not text:
        return None
    try:
        moment = datetime.fromisoformat(str(text).replace("Z", "+00:00"))
    except ValueError:
        return None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def seconds_between(earlier: str | None, later: str | None) -> float:
    """`later - earlier` in seconds; 0 when either is missing or unreadable."""
    start, end = parse_time(earlier), parse_time(later)
    return (end - start).total_seconds() if start and end else 0.0
