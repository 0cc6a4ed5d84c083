"""Run as a separate process by test_concurrency.py: `python page_reader.py SECONDS` renders the Search and
Compare pages through AppTest against the database in $COMPRESSION_LAB_DB until SECONDS pass, like a browser
session polling while workers write. Prints {"renders": N, "errors": [...]} as JSON."""
import json
import sys
import time
from pathlib import Path

from streamlit.testing.v1 import AppTest

APP = str(Path(__file__).resolve().parent.parent / "dashboard" / "app.py")


def main(seconds: float) -> dict:
    renders, errors, deadline = 0, [], time.monotonic() + seconds
    while time.monotonic() < deadline:
        for page in ("search", "compare"):
            at = AppTest.from_file(APP, default_timeout=120)
            at.run()
            at.switch_page(f"app_pages/{page}.py").run()
            errors += [e.value for e in at.exception] + [e.value for e in at.error]
            renders += 1
    return {"renders": renders, "errors": errors}


if __name__ == "__main__":
    print(json.dumps(main(float(sys.argv[1]))))
