"""Append reading labels to labels_<language>.csv, checked against the rubric.

One label per line on standard input, `ID|QUALITY|STRUCTURED_DATA|CONTENT_TYPE|RATIONALE`:

    python data/reading/add.py python <<'END'
    0a1b...|3|1|library|Small helper module: clear names, one JSON read, no docstrings.
    END

An id already labeled, an id not of that language or a label off the rubric is refused with the reason;
the other lines are kept.
"""

import argparse
import csv
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "src"))
from curator.labels import validate_labels  # noqa: E402

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from show import files_of, labeled_ids  # noqa: E402

FIELDS = ["id", "language", "quality", "structured_data", "content_type", "rationale"]

if __name__ == "__main__":
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("language")
    args = p.parse_args()
    known = {r["id"] for r in files_of(args.language)}
    done = labeled_ids(args.language)
    path = HERE / f"labels_{args.language}.csv"
    new = not path.exists()
    kept = 0
    with open(path, "a", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=FIELDS)
        if new:
            w.writeheader()
        for n, line in enumerate(sys.stdin, 1):
            line = line.strip()
            if not line:
                continue
            parts = line.split("|", 4)
            if len(parts) != 5:
                print(f"line {n}: want ID|QUALITY|STRUCTURED_DATA|CONTENT_TYPE|RATIONALE, got {line[:80]!r}")
                continue
            file_id, q, s, c, why = (x.strip() for x in parts)
            if file_id not in known:
                print(f"line {n}: {file_id} is not a {args.language} file of the sample")
                continue
            if file_id in done:
                print(f"line {n}: {file_id} is labeled already")
                continue
            try:
                q, s = int(q), int(s)
            except ValueError:
                print(f"line {n}: quality and structured_data must be whole numbers")
                continue
            problems = validate_labels(q, s, c)
            if problems or not why:
                print(f"line {n}: {problems or 'a rationale is needed'}")
                continue
            w.writerow(
                dict(
                    id=file_id,
                    language=args.language,
                    quality=q,
                    structured_data=s,
                    content_type=c,
                    rationale=why,
                )
            )
            done.add(file_id)
            kept += 1
    print(f"kept {kept}; {len(done)} of {len(known)} {args.language} files labeled")
