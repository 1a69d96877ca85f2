#!/bin/bash
# docs/img/data-docs.png: GX Data Docs of a day with planted bad rows, in headless Chromium.
# Run from the repository root: bash docs/img/data-docs.sh   (needs `chromium` on the PATH)
set -euo pipefail
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
PYTHONPATH=$PWD .venv/bin/python - "$work" <<'PY'
import sys
from pathlib import Path

import pyarrow as pa

from features import contract as C
from features.validation import validate_day
from tests.data import bad_batches as BB

root = Path(sys.argv[1])
t = BB.good_tables()
imp = t[C.IMPRESSIONS].to_pylist()
imp[0][C.USER_ID] = None                          # not_null:user_id
imp[1][C.USER_ID] = -7                            # non_negative:user_id
imp[2][C.DOMAIN] = "tgt_ghost"                    # domain_known
ctr = [i for i, r in enumerate(imp) if r[C.DOMAIN] == BB.CTR_DOMAINS[1]]
for i in ctr[3:6]:
    imp[i][C.LABEL] = 2.0                         # label_ctr_binary
imp.append(dict(imp[10]))                         # unique_request_item
imp[11][C.EVENT_TIME] = BB.NOW.replace(hour=23)   # event_time_not_future
schema = pa.schema([f.with_nullable(True) for f in t[C.IMPRESSIONS].schema])
t[C.IMPRESSIONS] = pa.Table.from_pylist(imp, schema=schema)
beh = t[C.BEHAVIORS]
kinds = beh.column(C.BEHAVIOR).to_pylist()
kinds[3] = kinds[4] = "teleport"                  # behavior_in_set
t[C.BEHAVIORS] = beh.set_column(beh.column_names.index(C.BEHAVIOR), C.BEHAVIOR, pa.array(kinds))
BB.write_landing(root / "logs", t)
print(validate_day(root / "logs", BB.DT, root / "out", now=BB.NOW).render())
PY
page=$(find "$work/out/data_docs/validations" -name "dacdr-impressions.html" | head -1)
# Bootstrap and Font Awesome come from CDNs: offline, a few local rules stand in for them
css='body{font-family:sans-serif;margin:24px}'
css+='.fa-check-circle::before{content:"\2714";color:#198754;font-style:normal;font-size:1.3em}'
css+='.fa-times::before{content:"\2716";color:#dc3545;font-style:normal;font-size:1.3em}'
css+='table{border-collapse:collapse;margin:6px 0}td,th{border-bottom:1px solid #ddd;padding:4px 8px}'
css+='#navigation,nav{display:none}'
python3 - "$page" "$work/page.html" "$css" <<'PY'
import sys
html = open(sys.argv[1]).read().replace("</head>", f"<style>{sys.argv[3]}</style></head>", 1)
open(sys.argv[2], "w").write(html)
PY
chromium --headless --no-sandbox --disable-gpu --disable-quic --no-first-run --disable-background-networking \
  --disable-component-update --disable-sync --user-data-dir="$work/profile" \
  --screenshot="$work/full.png" --window-size=1400,4200 "file://$work/page.html" 2>/dev/null
# the expectation tables (the page opens with run metadata)
.venv/bin/python -c "from PIL import Image; Image.open('$work/full.png').crop((0, 990, 1400, 2790)).save('docs/img/data-docs.png', optimize=True)"
