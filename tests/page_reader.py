"""Run as a separate process by test_concurrency.py: `python page_reader.py STOP_FILE` renders the Search and
Compare pages through AppTest against the database in $COMPRESSION_LAB_DB until STOP_FILE exists (the test makes
it when the workers have finished) and it has rendered each page at least twice, like a browser session polling
while workers write. Prints {"renders": N, "errors": [...], "stopped": bool} as JSON."""
import json
import sys
import time
from pathlib import Path

from streamlit.testing.v1 import AppTest

APP = str(Path(__file__).resolve().parent.parent / "dashboard" / "app.py")
DEADLINE_S = 300  # a reader that outlives its test would load the machine for the next one


def main(stop_file: Path) -> dict:
    renders, errors, deadline = 0, [], time.monotonic() + DEADLINE_S
    while (renders < 4 or not stop_file.exists()) and time.monotonic() < deadline:
        for page in ("search", "compare"):
            at = AppTest.from_file(APP, default_timeout=120)
            at.run()
            at.switch_page(f"app_pages/{page}.py").run()
            errors += [e.value for e in at.exception] + [e.value for e in at.error]
            renders += 1
    return {"renders": renders, "errors": errors, "stopped": stop_file.exists()}


if __name__ == "__main__":
    print(json.dumps(main(Path(sys.argv[1]))))
