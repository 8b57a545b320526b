"""Every event name the code can emit is documented in docs/EVENTS.md."""

import re
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
# log_.Info("event", ...) and friends, the name possibly on the next line.
CALL = re.compile(r'\.(?:Trace|Debug|Info|Warn|Error)\(\s*"([a-z_]+)"', re.S)
LOG_CALL = re.compile(r'\.Log\(\s*LogLevel::\w+,\s*"([a-z_]+)"', re.S)


def emitted_events():
    names = set()
    for path in list((REPO / "src").rglob("*.cc")) + list((REPO / "include").rglob("*.h")):
        text = path.read_text()
        names.update(CALL.findall(text))
        names.update(LOG_CALL.findall(text))
    return names


def documented_events():
    rows = re.findall(r"^\| `([a-z_]+)` \|", (REPO / "docs" / "EVENTS.md").read_text(), re.M)
    return set(rows)


def test_every_emitted_event_is_documented():
    emitted = emitted_events()
    assert "refresh_ok" in emitted and "stopping" in emitted  # the scan works
    missing = emitted - documented_events()
    assert not missing, f"events emitted but not in docs/EVENTS.md: {sorted(missing)}"


def test_every_documented_event_exists():
    stale = documented_events() - emitted_events()
    assert not stale, f"docs/EVENTS.md documents events the code never emits: {sorted(stale)}"
